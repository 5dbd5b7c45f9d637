//! The shop's pages and assets as HTTP answers (what they do in a browser is
//! in `browser.rs`).

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn every_page_route_answers_html_that_names_its_page() {
    let app = spawn_app().await;
    for (path, page) in [
        ("/", "home"),
        ("/sales", "sales"),
        ("/sales/1", "sale"),
        ("/products", "products"),
        ("/products?q=lighthouse", "products"),
        ("/products/3", "product"),
        ("/cart", "cart"),
        ("/login", "login"),
        ("/register", "register"),
        ("/orders", "orders"),
        ("/seller", "seller"),
        ("/admin", "admin"),
        ("/admin/sales/7", "admin-sale"),
        ("/admin/users", "admin-users"),
    ] {
        let resp = app.get(path, None).await;
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("ascii")
                .contains("script-src 'self'"),
            "{path}"
        );
        let html = resp.text().await.expect("body");
        assert!(
            html.contains(&format!("data-page=\"{page}\"")),
            "{path}: {html}"
        );
        assert!(html.contains("/assets/app.js"), "{path}");
    }
}

#[tokio::test]
async fn a_sale_or_product_page_whose_id_is_not_an_id_is_an_html_404() {
    let app = spawn_app().await;
    for path in [
        "/sales/abc",
        "/sales/0",
        "/sales/-3",
        "/admin/sales/1x",
        "/products/abc",
        "/products/0",
    ] {
        let resp = app.get(path, None).await;
        assert_eq!(resp.status(), 404, "{path}");
        let html = resp.text().await.expect("body");
        assert!(html.contains("data-page=\"not-found\""), "{path}: {html}");
    }
}

#[tokio::test]
async fn assets_have_their_content_type_an_etag_and_answer_304_when_unchanged() {
    let app = spawn_app().await;
    for (name, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("shop.js", "text/javascript; charset=utf-8"),
        ("products.js", "text/javascript; charset=utf-8"),
        ("cart.js", "text/javascript; charset=utf-8"),
        ("queue.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let resp = app.get(&format!("/assets/{name}"), None).await;
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.headers()["content-type"], kind, "{name}");
        assert_eq!(
            resp.headers()["cache-control"],
            "public, max-age=60, must-revalidate"
        );
        let etag = resp.headers()["etag"].clone();
        assert!(!resp.bytes().await.expect("body").is_empty(), "{name}");

        let again = app
            .client
            .get(app.url(&format!("/assets/{name}")))
            .header("if-none-match", etag.clone())
            .send()
            .await
            .expect("GET");
        assert_eq!(again.status(), 304, "{name}");
        assert_eq!(again.headers()["etag"], etag);

        let stale = app
            .client
            .get(app.url(&format!("/assets/{name}")))
            .header("if-none-match", "\"0000\"")
            .send()
            .await
            .expect("GET");
        assert_eq!(stale.status(), 200, "{name}");
    }
    assert_eq!(app.get("/assets/nope.js", None).await.status(), 404);
    assert_eq!(app.get("/assets/../Cargo.toml", None).await.status(), 404);
}

#[tokio::test]
async fn unknown_api_paths_still_answer_the_json_404() {
    let app = spawn_app().await;
    for path in ["/api/v1/nope", "/api/v1/sales/1/nope", "/api/admin"] {
        assert_error(app.get(path, None).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_page_or_asset_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let trace = reqwest::Method::from_bytes(b"TRACE").unwrap();
    for (method, path) in [
        (trace.clone(), "/sales"),
        (reqwest::Method::POST, "/orders/3"),
        (reqwest::Method::POST, "/cart"),
        (reqwest::Method::PUT, "/products/3"),
        (
            reqwest::Method::DELETE,
            "/pay/7d1c6a4e-2f59-4a55-8d4e-9f1e0a3b2c11",
        ),
        (trace, "/assets/app.js"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], "GET", "{method} {path}");
    }
    // A path nobody serves stays 404.
    assert_error(app.get("/no-such-page", None).await, 404, "not_found").await;
}
