//! Operational endpoints (health, readiness, metrics, OpenAPI, Swagger UI),
//! unknown routes, and the one shape every error body has.

use flashsale::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, client_without_redirects, spawn_app, TestApp};

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn healthz_returns_200() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get("/healthz", None).await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn readyz_returns_200_while_the_database_answers() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get("/readyz", None).await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn readyz_returns_503_busy_when_the_database_is_unreachable() {
    // Arrange: the server shares this pool; closing it cuts the database off.
    let app = spawn_app().await;
    app.pool.close().await;

    // Act
    let resp = app.get("/readyz", None).await;

    // Assert
    let retry_after = resp.headers().get("retry-after").cloned();
    assert_error(resp, 503, "busy").await;
    assert!(retry_after.is_some(), "503 busy carries Retry-After");
    assert_eq!(
        app.get("/healthz", None).await.status().as_u16(),
        200,
        "the process itself is still up"
    );
}

#[tokio::test]
async fn metrics_count_requests_in_prometheus_text() {
    // Arrange
    let app = spawn_app().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status().as_u16(), 200);

    // Act
    let resp = app.get("/metrics", None).await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        content_type(&resp).starts_with("text/plain"),
        "{}",
        content_type(&resp)
    );
    let text = resp.text().await.expect("text");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("flashsale_http_requests_total{")
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("a counter for GET /healthz in:\n{text}"));
    let count: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number at the end of {line:?}"));
    assert!(count >= 1.0, "{line}");
}

#[tokio::test]
async fn openapi_json_documents_every_route_of_the_contract() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app.get("/openapi.json", None).await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        content_type(&resp).contains("json"),
        "{}",
        content_type(&resp)
    );
    let (_, spec) = body(resp).await;
    assert!(spec["openapi"].is_string(), "an OpenAPI document: {spec}");
    let paths = spec["paths"].as_object().expect("paths");
    let purchase = &paths
        .get("/api/v1/sales/{id}/purchase")
        .unwrap_or_else(|| panic!("the purchase route; have {:?}", paths.keys()))["post"];
    assert!(purchase.is_object(), "POST purchase");
    for (path, method) in [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/products", "get"),
        ("/api/v1/products", "post"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/products/{id}", "patch"),
        ("/api/v1/sales", "get"),
        ("/api/v1/sales", "post"),
        ("/api/v1/sales/{id}", "get"),
        ("/api/v1/sales/{id}", "patch"),
        ("/api/v1/sales/{id}/status", "get"),
        ("/api/v1/admin/sales/{id}/stats", "get"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/seller/revenue", "get"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users/{id}", "patch"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
}

#[tokio::test]
async fn docs_serve_the_swagger_ui_under_a_script_policy_and_docs_without_a_slash_redirects() {
    // Arrange
    let app = spawn_app().await;
    let client = client_without_redirects();

    // Act
    let redirect = client.get(app.url("/docs")).send().await.expect("/docs");
    let page = client.get(app.url("/docs/")).send().await.expect("/docs/");

    // Assert
    assert!(redirect.status().is_redirection(), "{}", redirect.status());
    let location = redirect
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok());
    assert_eq!(location, Some("/docs/"));
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        content_type(&page).starts_with("text/html"),
        "{}",
        content_type(&page)
    );
    // Only the UI's own files run: no inline script, no other origin.
    let csp = |r: &reqwest::Response| {
        let v = r.headers().get("content-security-policy");
        v.and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let policy = csp(&page);
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(
        policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe-"),
        "{policy}"
    );
    let html = page.text().await.expect("html");
    assert!(html.to_lowercase().contains("swagger"), "{html}");
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "{html}");
    for tag in scripts {
        let src = tag.split("src=\"").nth(1).and_then(|s| s.split('"').next());
        let src = src.unwrap_or_else(|| panic!("an inline script, which the policy blocks: {tag}"));
        let path = format!("/docs/{}", src.trim_start_matches("./"));
        let asset = app.get(&path, None).await;
        assert_eq!(
            asset.status().as_u16(),
            200,
            "{path} is served from the binary"
        );
        assert_eq!(csp(&asset), policy, "{path}");
        if path.ends_with("swagger-initializer.js") {
            let js = asset.text().await.expect("js");
            assert!(js.contains("/openapi.json"), "the UI reads our spec: {js}");
        }
    }
}

#[tokio::test]
async fn an_unknown_route_returns_404_not_found() {
    // Arrange
    let app = spawn_app().await;

    for path in [
        "/nope",
        "/api/v1/nope",
        "/api/v2/sales",
        "/api/v1/sales/1/refund",
    ] {
        // Act
        let resp = app.get(path, None).await;

        // Assert
        assert_error(resp, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_known_path_with_another_method_returns_405_with_allow() {
    // Arrange
    let app = spawn_app().await;
    let trace = Method::from_bytes(b"TRACE").expect("a method");

    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/products", "GET, POST"),
        (Method::PUT, "/api/v1/sales/1", "GET, PATCH"),
        (Method::GET, "/api/v1/auth/login", "POST"),
        (Method::POST, "/healthz", "GET"),
        (trace.clone(), "/api/v1/sales", "GET, POST"),
        (trace, "/api/v1/sales/1/purchase", "POST"),
        (Method::OPTIONS, "/api/v1/unsubscribe", "GET, POST"),
    ] {
        // Act
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("send");

        // Assert
        let ct = content_type(&resp);
        let got_allow = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, v) = body(resp).await;
        assert_eq!(status, 405, "{method} {path}: {v}");
        assert_eq!(got_allow.as_deref(), Some(allow), "{method} {path}");
        assert_eq!(
            v["error"]["code"], "method_not_allowed",
            "{method} {path}: {v}"
        );
        assert_error_shape(&format!("{method} {path}"), status, &ct, &v);
    }
}

/// Asserts `{"error": {"code", "message", "details"?}}` and nothing else, as
/// JSON.
fn assert_error_shape(what: &str, status: u16, content_type: &str, v: &Value) {
    assert!(status >= 400, "{what}: an error, got {status}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: JSON, got {content_type:?}"
    );
    let top = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: an object: {v}"));
    assert_eq!(top.keys().collect::<Vec<_>>(), ["error"], "{what}: {v}");
    let error = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error is an object: {v}"));
    for key in error.keys() {
        assert!(
            ["code", "message", "details"].contains(&key.as_str()),
            "{what}: unexpected key {key}: {v}"
        );
    }
    let code = error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: code is a string: {v}"));
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{what}: snake_case code: {v}"
    );
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: message is a string: {v}"));
    assert!(!message.is_empty(), "{what}: a message: {v}");
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    raw: Option<String>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = raw {
        r = r.header("content-type", "application/json").body(b);
    }
    r.send().await.expect("request")
}

#[tokio::test]
async fn every_error_body_has_the_same_shape() {
    // Arrange: one request for each kind of failure the API answers.
    let app = spawn_app().await;
    let customer = app.create_user(Role::Customer).await;
    let sold_out = app.active_sale(1).await;
    let buyer = app.create_user(Role::Customer).await;
    let resp = app
        .post(
            &format!("/api/v1/sales/{sold_out}/purchase"),
            Some(&buyer.token),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201, "the one unit is sold");
    let upcoming = app.create_sale(3600, 60, 5, 1).await["id"]
        .as_i64()
        .expect("id");
    let two_per_user = app.create_sale(-60, 3600, 5, 2).await["id"]
        .as_i64()
        .expect("id");
    let purchase = |id: i64| format!("/api/v1/sales/{id}/purchase");
    let taken = json!({
        "username": customer.username, "email": "new@example.test", "password": "password123"
    });
    let too_large = json!({"username": "a".repeat(70 * 1024), "password": "x"});
    let ct = &customer.token;
    let cases = vec![
        Probe::new("not JSON", Method::POST, "/api/v1/auth/login", 400).raw("{"),
        Probe::new("bad path id", Method::GET, "/api/v1/sales/abc", 400),
        Probe::new("no token", Method::GET, "/api/v1/me", 401),
        Probe::new("bad token", Method::GET, "/api/v1/me", 401).token("x.y.z"),
        Probe::new("bad login", Method::POST, "/api/v1/auth/login", 401)
            .raw(r#"{"username": "nobody", "password": "whatever1"}"#),
        Probe::new("forbidden", Method::GET, "/api/v1/admin/users", 403).token(ct),
        Probe::new("no route", Method::GET, "/api/v1/nothing", 404),
        Probe::new("no sale", Method::GET, "/api/v1/sales/987654", 404),
        Probe::new("taken username", Method::POST, "/api/v1/auth/register", 409)
            .raw(taken.to_string()),
        Probe::new("not started", Method::POST, purchase(upcoming), 409).token(ct),
        Probe::new("sold out", Method::POST, purchase(sold_out), 409).token(ct),
        Probe::new("already bought", Method::POST, purchase(sold_out), 409).token(&buyer.token),
        Probe::new("too large", Method::POST, "/api/v1/auth/login", 413).raw(too_large.to_string()),
        Probe::new("validation", Method::POST, "/api/v1/auth/register", 422)
            .raw(r#"{"username": 1}"#),
        Probe::new("over the limit", Method::POST, purchase(two_per_user), 422)
            .token(ct)
            .raw(r#"{"quantity": 3}"#),
        Probe::new("bad query", Method::GET, "/api/v1/products?limit=x", 422),
    ];

    for p in cases {
        // Act
        let resp = send(&app, p.method, &p.path, p.token.as_deref(), p.raw).await;

        // Assert
        let ct = content_type(&resp);
        let (got, v) = body(resp).await;
        assert_eq!(got, p.status, "{}: {v}", p.what);
        assert_error_shape(p.what, got, &ct, &v);
    }
}

/// One request expected to fail with `status`.
struct Probe {
    what: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    raw: Option<String>,
    status: u16,
}

impl Probe {
    fn new(what: &'static str, method: Method, path: impl Into<String>, status: u16) -> Self {
        Probe {
            what,
            method,
            path: path.into(),
            token: None,
            raw: None,
            status,
        }
    }

    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    fn raw(mut self, body: impl Into<String>) -> Self {
        self.raw = Some(body.into());
        self
    }
}

#[tokio::test]
async fn validation_errors_carry_details_naming_the_fields() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .post(
            "/api/v1/auth/register",
            None,
            &json!({"username": "x", "email": "nope", "password": "short"}),
        )
        .await;

    // Assert
    let v = assert_error(resp, 422, "validation_failed").await;
    let fields = v["error"]["details"]["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("details.fields: {v}"));
    for field in ["username", "email", "password"] {
        assert!(
            fields.get(field).is_some_and(Value::is_string),
            "{field} named with its problem: {v}"
        );
    }
}
