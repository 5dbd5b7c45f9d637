//! Who may do what: roles, anonymous requests, forged and dead tokens, and
//! admin changes to accounts taking effect on the very next request.

use flashsale::auth::{Claims, Role};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, jwt_secret, spawn_app, TestApp, TestUser};

/// Sends `method path` with an optional bearer token and JSON body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.expect("request")
}

fn product_body() -> Value {
    json!({"name": "Forbidden Book", "description": "x", "price_cents": 1200})
}

async fn sale_body(app: &TestApp, product_id: i64) -> Value {
    let now = app.db_now().await;
    json!({
        "product_id": product_id,
        "starts_at": now + chrono::Duration::seconds(60),
        "ends_at": now + chrono::Duration::seconds(3600),
        "stock": 10
    })
}

/// Counts of the tables a forbidden request might write to.
async fn written_rows(app: &TestApp) -> [i64; 4] {
    [
        app.scalar_i64("select count(*) from app_user").await,
        app.scalar_i64("select count(*) from product").await,
        app.scalar_i64("select count(*) from sale").await,
        app.scalar_i64("select count(*) from purchase_order").await,
    ]
}

#[tokio::test]
async fn a_customer_gets_403_forbidden_on_seller_and_admin_routes() {
    // Arrange
    let app = spawn_app().await;
    let customer = app.create_user(Role::Customer).await;
    let other = app.create_user(Role::Customer).await;
    let product = app.create_product(1500).await;
    let sale = app.active_sale(5).await;
    let sale_body = sale_body(&app, product).await;
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "create a product",
            Method::POST,
            "/api/v1/products".into(),
            Some(product_body()),
        ),
        (
            "change a product",
            Method::PATCH,
            format!("/api/v1/products/{product}"),
            Some(json!({"name": "Mine now"})),
        ),
        (
            "create a sale",
            Method::POST,
            "/api/v1/sales".into(),
            Some(sale_body),
        ),
        (
            "cancel a sale",
            Method::PATCH,
            format!("/api/v1/sales/{sale}"),
            Some(json!({"cancelled": true})),
        ),
        (
            "read sale stats",
            Method::GET,
            format!("/api/v1/admin/sales/{sale}/stats"),
            None,
        ),
        (
            "list users",
            Method::GET,
            "/api/v1/admin/users".into(),
            None,
        ),
        (
            "promote itself",
            Method::PATCH,
            format!("/api/v1/admin/users/{}", customer.id),
            Some(json!({"role": "admin"})),
        ),
        (
            "disable someone",
            Method::PATCH,
            format!("/api/v1/admin/users/{}", other.id),
            Some(json!({"disabled": true})),
        ),
        (
            "read seller revenue",
            Method::GET,
            "/api/v1/seller/revenue".into(),
            None,
        ),
    ];
    let before = written_rows(&app).await;
    let product_before = body(app.get(&format!("/api/v1/products/{product}"), None).await).await;
    let sale_before = body(app.get(&format!("/api/v1/sales/{sale}"), None).await).await;

    for (what, method, path, payload) in cases {
        // Act
        let resp = send(&app, method, &path, Some(&customer.token), payload.as_ref()).await;

        // Assert
        let (status, v) = body(resp).await;
        assert_eq!(status, 403, "a customer may not {what}: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
    }
    assert_eq!(written_rows(&app).await, before, "nothing was written");
    let product_after = body(app.get(&format!("/api/v1/products/{product}"), None).await).await;
    assert_eq!(product_after, product_before, "the product is unchanged");
    let (_, sale_after) = body(app.get(&format!("/api/v1/sales/{sale}"), None).await).await;
    assert_eq!(sale_after["state"], sale_before.1["state"], "not cancelled");
    let role: String = sqlx::query_scalar("select role from app_user where id = $1")
        .bind(customer.id)
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "customer", "no self-promotion");
    let disabled: bool =
        sqlx::query_scalar("select disabled_at is not null from app_user where id = $1")
            .bind(other.id)
            .fetch_one(&app.pool)
            .await
            .expect("disabled_at");
    assert!(!disabled, "the other customer was not disabled");
}

#[tokio::test]
async fn a_seller_gets_403_forbidden_on_admin_routes() {
    // Arrange
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let product = app.create_product(1500).await;
    let sale = app.active_sale(5).await;
    let sale_body = sale_body(&app, product).await;
    let before = written_rows(&app).await;

    for (what, method, path, payload) in [
        (
            "create a sale",
            Method::POST,
            "/api/v1/sales".to_string(),
            Some(sale_body),
        ),
        (
            "read sale stats",
            Method::GET,
            format!("/api/v1/admin/sales/{sale}/stats"),
            None,
        ),
        (
            "list users",
            Method::GET,
            "/api/v1/admin/users".into(),
            None,
        ),
    ] {
        // Act
        let resp = send(&app, method, &path, Some(&seller.token), payload.as_ref()).await;

        // Assert
        let (status, v) = body(resp).await;
        assert_eq!(status, 403, "a seller may not {what}: {v}");
        assert_eq!(v["error"]["code"], "forbidden", "{what}: {v}");
    }
    assert_eq!(written_rows(&app).await, before, "nothing was written");
}

#[tokio::test]
async fn anonymous_requests_to_protected_routes_return_401_unauthorized() {
    // Arrange
    let app = spawn_app().await;
    let product = app.create_product(1500).await;
    let sale = app.active_sale(5).await;
    let user = app.create_user(Role::Customer).await;
    let sale_body = sale_body(&app, product).await;
    let before = written_rows(&app).await;
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/me".into(), None),
        (Method::POST, "/api/v1/auth/logout".into(), None),
        (
            Method::POST,
            "/api/v1/products".into(),
            Some(product_body()),
        ),
        (
            Method::PATCH,
            format!("/api/v1/products/{product}"),
            Some(json!({"name": "x"})),
        ),
        (Method::POST, "/api/v1/sales".into(), Some(sale_body)),
        (
            Method::PATCH,
            format!("/api/v1/sales/{sale}"),
            Some(json!({"cancelled": true})),
        ),
        (
            Method::POST,
            format!("/api/v1/sales/{sale}/purchase"),
            Some(json!({"quantity": 1})),
        ),
        (Method::POST, format!("/api/v1/sales/{sale}/purchase"), None),
        (Method::GET, "/api/v1/orders".into(), None),
        (Method::GET, "/api/v1/orders/1".into(), None),
        (
            Method::GET,
            format!("/api/v1/admin/sales/{sale}/stats"),
            None,
        ),
        (Method::GET, "/api/v1/admin/users".into(), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{}", user.id),
            Some(json!({"disabled": true})),
        ),
        (Method::GET, "/api/v1/seller/revenue".into(), None),
    ];

    for (method, path, payload) in cases {
        // Act
        let resp = send(&app, method.clone(), &path, None, payload.as_ref()).await;

        // Assert
        let challenge = resp.headers().get("www-authenticate").cloned();
        let (status, v) = body(resp).await;
        assert_eq!(status, 401, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}: {v}");
        assert_eq!(
            challenge.as_ref().and_then(|h| h.to_str().ok()),
            Some("Bearer"),
            "{method} {path} names the scheme"
        );
    }
    assert_eq!(written_rows(&app).await, before, "nothing was written");
}

#[tokio::test]
async fn a_malformed_authorization_header_returns_401_unauthorized() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;

    for header in [
        format!("Basic {}", admin.token),
        admin.token.clone(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Token {}", admin.token),
    ] {
        // Act
        let resp = app
            .client
            .get(app.url("/api/v1/admin/users"))
            .header("authorization", &header)
            .send()
            .await
            .expect("GET");

        // Assert
        assert_error(resp, 401, "unauthorized").await;
    }
}

/// Base64url of `{"alg":"none","typ":"JWT"}`.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

fn parts(token: &str) -> [&str; 3] {
    let p: Vec<&str> = token.split('.').collect();
    assert_eq!(p.len(), 3, "a JWT has three parts: {token}");
    [p[0], p[1], p[2]]
}

fn claims_for(user: &TestUser, role: Role, iat: i64, exp: i64) -> Claims {
    Claims {
        sub: user.id.to_string(),
        role,
        jti: uuid::Uuid::new_v4(),
        iat,
        exp,
    }
}

#[tokio::test]
async fn forged_expired_and_dead_tokens_return_401() {
    // Arrange: an admin whose real token opens the admin route, and tokens
    // for that same admin that are wrong in exactly one way each.
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let customer = app.create_user(Role::Customer).await;
    let now = chrono::Utc::now().timestamp();
    let fresh = claims_for(&admin, Role::Admin, now, now + 600);
    let [_, admin_payload, admin_signature] = parts(&admin.token);

    let other_key = flashsale::auth::JwtKeys::new(
        b"not-the-server-secret-not-the-server-secret",
        std::time::Duration::from_secs(600),
    );
    let bad_signature = other_key.sign(&fresh).expect("sign");
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &fresh,
        &EncodingKey::from_secret(jwt_secret()),
    )
    .expect("HS512");
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &fresh,
        &EncodingKey::from_secret(jwt_secret()),
    )
    .expect("HS384");
    let expired = app
        .jwt
        .sign(&claims_for(&admin, Role::Admin, now - 3600, now - 120))
        .expect("sign");
    // The customer's genuine header and signature around the admin's claims.
    let [customer_header, _, customer_signature] = parts(&customer.token);
    let spliced = format!("{customer_header}.{admin_payload}.{customer_signature}");
    let unknown_user = app
        .jwt
        .sign(&Claims {
            sub: "987654321".into(),
            ..fresh.clone()
        })
        .expect("sign");
    let not_a_number = app
        .jwt
        .sign(&Claims {
            sub: "admin".into(),
            ..fresh.clone()
        })
        .expect("sign");
    let logged_out = app.jwt.issue(admin.id, Role::Admin).expect("issue").0;
    let resp = app
        .post("/api/v1/auth/logout", Some(&logged_out), &json!({}))
        .await;
    assert_eq!(resp.status().as_u16(), 204, "logout");

    let cases: Vec<(&str, String, &str)> = vec![
        ("a bad signature", bad_signature, "unauthorized"),
        (
            "alg none without a signature",
            format!("{ALG_NONE_HEADER}.{admin_payload}."),
            "unauthorized",
        ),
        (
            "alg none with the real signature",
            format!("{ALG_NONE_HEADER}.{admin_payload}.{admin_signature}"),
            "unauthorized",
        ),
        ("HS512 with the same secret", hs512, "unauthorized"),
        ("HS384 with the same secret", hs384, "unauthorized"),
        ("an expired token", expired, "unauthorized"),
        (
            "claims spliced under another signature",
            spliced,
            "unauthorized",
        ),
        ("a token of no user", unknown_user, "unauthorized"),
        ("a subject that is not an id", not_a_number, "unauthorized"),
        ("garbage", "garbage".into(), "unauthorized"),
        ("three dots of garbage", "a.b.c".into(), "unauthorized"),
        ("a logged-out token", logged_out, "token_revoked"),
    ];
    let control = app.get("/api/v1/admin/users", Some(&admin.token)).await;
    assert_eq!(control.status().as_u16(), 200, "the real token works");

    for (what, token, code) in cases {
        // Act
        let resp = app.get("/api/v1/admin/users", Some(&token)).await;

        // Assert
        let (status, v) = body(resp).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
    }
}

#[tokio::test]
async fn a_seller_cannot_patch_another_sellers_product() {
    // Arrange
    let app = spawn_app().await;
    let owner = app.create_user(Role::Seller).await;
    let intruder = app.create_user(Role::Seller).await;
    let product = app.create_product_by(&owner, 1000).await;
    let id = product["id"].as_i64().expect("id");
    let path = format!("/api/v1/products/{id}");

    // Act
    let resp = app
        .patch(
            &path,
            Some(&intruder.token),
            &json!({"name": "Stolen", "price_cents": 1}),
        )
        .await;

    // Assert
    assert_error(resp, 403, "forbidden").await;
    let (_, now) = body(app.get(&path, None).await).await;
    assert_eq!(now, product, "the product is unchanged");
    let own = app
        .patch(&path, Some(&owner.token), &json!({"name": "Renamed"}))
        .await;
    let (status, v) = body(own).await;
    assert_eq!(status, 200, "its own seller may change it: {v}");
    assert_eq!(v["name"], "Renamed");
}

#[tokio::test]
async fn a_disabled_user_is_refused_on_the_next_request_with_the_old_token() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let user = app.create_user(Role::Customer).await;
    let (status, v) = body(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": crate::helpers::PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let refresh_token = v["refresh_token"].as_str().expect("refresh").to_string();
    let before = app.get("/api/v1/me", Some(&user.token)).await;
    assert_eq!(before.status().as_u16(), 200, "the token works before");

    // Act
    let (status, v) = body(
        app.patch(
            &format!("/api/v1/admin/users/{}", user.id),
            Some(&admin.token),
            &json!({"disabled": true}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["disabled"], true, "{v}");
    // A disabled account is authenticated but may do nothing: 403 forbidden.
    assert_error(
        app.get("/api/v1/me", Some(&user.token)).await,
        403,
        "forbidden",
    )
    .await;
    let sale = app.active_sale(5).await;
    let buy = app
        .post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&user.token),
            &json!({}),
        )
        .await;
    assert_error(buy, 403, "forbidden").await;
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );
    let refreshed = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_error(refreshed, 401, "unauthorized").await;
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert!(
        [401, 403].contains(&login.status().as_u16()),
        "a disabled account cannot sign in again: {}",
        login.status()
    );
}

#[tokio::test]
async fn re_enabling_a_user_lets_the_old_token_work_again() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let user = app.create_user(Role::Customer).await;
    let path = format!("/api/v1/admin/users/{}", user.id);
    let resp = app
        .patch(&path, Some(&admin.token), &json!({"disabled": true}))
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        app.get("/api/v1/me", Some(&user.token))
            .await
            .status()
            .as_u16(),
        403
    );

    // Act
    let resp = app
        .patch(&path, Some(&admin.token), &json!({"disabled": false}))
        .await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    let me = app.get("/api/v1/me", Some(&user.token)).await;
    assert_eq!(me.status().as_u16(), 200);
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let user = app.create_user(Role::Customer).await;
    let refused = app
        .post("/api/v1/products", Some(&user.token), &product_body())
        .await;
    assert_error(refused, 403, "forbidden").await;

    // Act
    let (status, v) = body(
        app.patch(
            &format!("/api/v1/admin/users/{}", user.id),
            Some(&admin.token),
            &json!({"role": "seller"}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["role"], "seller");
    let (status, product) = body(
        app.post("/api/v1/products", Some(&user.token), &product_body())
            .await,
    )
    .await;
    assert_eq!(status, 201, "the same token now lists products: {product}");
    assert_eq!(product["seller_id"], user.id);
    let (_, me) = body(app.get("/api/v1/me", Some(&user.token)).await).await;
    assert_eq!(me["role"], "seller");
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_routes_on_the_next_request() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let other_admin = app.create_user(Role::Admin).await;
    let before = app
        .get("/api/v1/admin/users", Some(&other_admin.token))
        .await;
    assert_eq!(before.status().as_u16(), 200);

    // Act
    let resp = app
        .patch(
            &format!("/api/v1/admin/users/{}", other_admin.id),
            Some(&admin.token),
            &json!({"role": "customer"}),
        )
        .await;

    // Assert
    assert_eq!(resp.status().as_u16(), 200);
    let after = app
        .get("/api/v1/admin/users", Some(&other_admin.token))
        .await;
    assert_error(after, 403, "forbidden").await;
}
