//! What a page on another site can make a visitor's browser send without a
//! CORS preflight: forms whose body is JSON under another content type. A
//! JSON body must say `Content-Type: application/json`, or it is refused
//! with `400 bad_request` before anything is done; only an empty body (a
//! purchase without one) needs no content type.

use flashsale::auth::Role;
use serde_json::json;

use crate::helpers::{assert_error, body, spawn_app, TestApp, PASSWORD};

async fn post_as(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    raw: &str,
) -> reqwest::Response {
    let mut r = app.client.post(app.url(path)).body(raw.to_owned());
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("POST")
}

#[tokio::test]
async fn json_bodies_must_be_sent_as_application_json() {
    // Arrange
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;
    let login = json!({"username": user.username, "password": PASSWORD}).to_string();
    let sale = app.active_sale(10).await;
    let purchase = format!("/api/v1/sales/{sale}/purchase");
    let registration =
        json!({"username": "xsite", "email": "xsite@example.test", "password": PASSWORD})
            .to_string();

    // Act and assert: what a cross-site form can send is refused.
    for ct in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let resp = post_as(&app, "/api/v1/auth/login", None, ct, &login).await;
        let v = assert_error(resp, 400, "bad_request").await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{ct:?}: {v}"
        );
        let resp = post_as(&app, "/api/v1/auth/register", None, ct, &registration).await;
        assert_error(resp, 400, "bad_request").await;
        let resp = post_as(&app, &purchase, Some(&user.token), ct, r#"{"quantity":1}"#).await;
        assert_error(resp, 400, "bad_request").await;
    }
    assert_eq!(
        app.scalar_i64("select count(*) from refresh_token").await,
        0
    );
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );
    assert_eq!(
        app.scalar_i64("select count(*) from app_user where username = 'xsite'")
            .await,
        0
    );

    // JSON, in any case and with parameters, is fine.
    for ct in ["application/json", "Application/JSON; charset=UTF-8"] {
        let resp = post_as(&app, "/api/v1/auth/login", None, Some(ct), &login).await;
        assert_eq!(resp.status().as_u16(), 200, "{ct}");
    }
    // A purchase with no body at all needs no content type.
    let (status, order) = body(post_as(&app, &purchase, Some(&user.token), None, "").await).await;
    assert_eq!(status, 201, "{order}");
}
