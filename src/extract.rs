//! Request extractors whose failures go through [`ApiError`]: a JSON body
//! (not JSON, or not sent as `Content-Type: application/json` →
//! `bad_request`, wrong shape → `validation_failed` naming the field, over
//! 64 KiB → `payload_too_large`) and the client IP.
//!
//! The content type is required because a page on another site may post a
//! form whose body happens to be JSON (`text/plain`, or a form encoding)
//! without asking; `application/json` it may send only after a CORS
//! preflight, which this server never grants. So no other site can sign a
//! visitor in, or act for them. DESIGN §4 answers any unusable body with
//! `400 bad_request` (it has no 415), and so does this.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body.
pub struct Json<T>(pub T);

/// A JSON request body that may be left out entirely (`None` when empty).
pub struct OptionalJson<T>(pub Option<T>);

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let body = read_body(req, payload);
        Box::pin(async move {
            let body = body.await?;
            require_json(json, &body)?;
            parse_json(&body).map(Json)
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let body = read_body(req, payload);
        Box::pin(async move {
            let body = body.await?;
            // Nothing sent needs no content type.
            if body.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(OptionalJson(None));
            }
            require_json(json, &body)?;
            parse_json(&body).map(|v| OptionalJson(Some(v)))
        })
    }
}

/// Whether the request says its body is `application/json` (parameters such
/// as `charset` allowed; case does not matter).
fn is_json(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage;
    req.mime_type().ok().flatten().is_some_and(|m| {
        use actix_web::mime;
        m.type_() == mime::APPLICATION && m.subtype() == mime::JSON && m.suffix().is_none()
    })
}

/// `bad_request` for a body that was sent without the JSON content type (an
/// empty one is left to [`parse_json`], which asks for an object).
fn require_json(json: bool, body: &[u8]) -> Result<(), ApiError> {
    if json || body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    Err(ApiError::BadRequest(
        "send the request body as JSON, with the header `Content-Type: application/json`".into(),
    ))
}

/// A request body as raw bytes (at most [`MAX_BODY_BYTES`]), for a route
/// that checks a signature over exactly what was sent.
pub struct RawBody(pub web::BytesMut);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move { body.await.map(RawBody) })
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] whether or not
/// the client declared its length.
fn read_body(req: &HttpRequest, payload: &mut Payload) -> Fut<web::BytesMut> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    Box::pin(async move {
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// Decodes a JSON document, telling syntax errors (400) from shape errors
/// (422, with the path of the offending field).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    let not_json = |e: serde_json::Error| {
        ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
    };
    // Every body is an object; serde would otherwise read a struct from an
    // array by position.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_json)?;
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("the request body is not valid JSON: {inner}"))
            }
            Category::Data => {
                let msg = strip_position(&inner.to_string());
                // For a missing field serde names it in the message, not the path.
                let field = if path == "." {
                    missing_field(&msg).unwrap_or_else(|| "body".to_string())
                } else {
                    path
                };
                ApiError::Validation {
                    message: format!("{field}: {msg}"),
                    details: serde_json::json!({ "fields": { field: msg } }),
                }
            }
        }
    })?;
    // Anything after the document (`{...} trailing`) makes it not JSON.
    de.end().map_err(not_json)?;
    Ok(value)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The address of the client that opened the connection.
pub fn client_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: i64,
    }

    #[test]
    fn syntax_errors_are_bad_requests() {
        let e = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(e.code(), "bad_request");
        let e = parse_json::<Body>(b"").unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name": "x", "count": "many"}"#).unwrap_err();
        assert_eq!(e.code(), "validation_failed");
        assert!(e.to_string().starts_with("count:"), "{e}");
        let e = parse_json::<Body>(br#"{"name": "x"}"#).unwrap_err();
        assert!(e.to_string().starts_with("count:"), "{e}");
        let e = parse_json::<Body>(br#"[1, 2]"#).unwrap_err();
        assert_eq!(e.code(), "validation_failed");
        let e = parse_json::<Body>(br#"["x", 2]"#).unwrap_err();
        assert_eq!(e.code(), "validation_failed", "an array is not an object");
        let e = parse_json::<Body>(br#"[1, "#).unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }

    #[test]
    fn trailing_characters_are_bad_requests() {
        let e = parse_json::<Body>(br#"{"name": "x", "count": 1} trailing"#).unwrap_err();
        assert_eq!(e.code(), "bad_request");
        let e = parse_json::<Body>(br#"{"name": "x", "count": 1}{}"#).unwrap_err();
        assert_eq!(e.code(), "bad_request");
        assert!(parse_json::<Body>(b"{\"name\": \"x\", \"count\": 1}\n").is_ok());
    }
}
