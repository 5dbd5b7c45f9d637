//! Input an attacker would send: instants far outside the calendar, control
//! characters in text, passwords longer than bcrypt reads, tokens from the
//! future. Each is refused with its documented code and writes nothing.

use serde_json::json;

use flashsale::auth::Role;

use crate::helpers::{assert_error, body, spawn_app, PASSWORD};

mod cross_site;

#[tokio::test]
async fn sale_windows_outside_the_calendar_are_validation_failed() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product(100).await;
    let cases = [
        ("ends_at", "2030-01-01T00:00:00Z", "+262142-12-31T23:59:59Z"),
        ("ends_at", "2030-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"),
        ("starts_at", "-5000-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
        ("starts_at", "1969-12-31T23:59:59Z", "2030-01-01T00:00:00Z"),
    ];
    for (field, starts, ends) in cases {
        let (status, v) = body(
            app.post(
                "/api/v1/sales",
                Some(&admin.token),
                &json!({"product_id": product, "starts_at": starts, "ends_at": ends, "stock": 5}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 422, "{starts} .. {ends}: {v}");
        assert_eq!(v["error"]["code"], "validation_failed", "{v}");
        assert!(
            v["error"]["details"]["fields"].get(field).is_some()
                || v["error"]["message"].as_str().unwrap_or("").contains(field),
            "{field} named: {v}"
        );
    }
    assert_eq!(app.scalar_i64("select count(*) from sale").await, 0);

    // Nor can a sale be moved there.
    let sale = app.create_sale(600, 60, 5, 1).await["id"]
        .as_i64()
        .expect("id");
    let v = assert_error(
        app.patch(
            &format!("/api/v1/sales/{sale}"),
            Some(&admin.token),
            &json!({"ends_at": "+262142-12-31T23:59:59Z"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        v["error"]["details"]["fields"]["ends_at"].is_string(),
        "{v}"
    );
    // The sale still answers, and so do purchases in it.
    let buyer = app.create_customers(1).await.remove(0);
    assert_error(
        app.purchase(sale, &buyer, Some(1)).await,
        409,
        "sale_not_started",
    )
    .await;
}

#[tokio::test]
async fn control_characters_in_text_are_validation_failed() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;

    let v = assert_error(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": "Book", "description": "a\u{0}b", "price_cents": 100}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        v["error"]["details"]["fields"]["description"].is_string(),
        "{v}"
    );
    let v = assert_error(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "ad\u{0}min", "password": PASSWORD}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        v["error"]["details"]["fields"]["username"].is_string(),
        "{v}"
    );
    // Line breaks in a description are text, not control.
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": "Book", "description": "line one\nline two", "price_cents": 100}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(app.scalar_i64("select count(*) from product").await, 1);
}

#[tokio::test]
async fn passwords_are_bounded_by_what_bcrypt_reads() {
    let app = spawn_app().await;
    let long = "p".repeat(73);
    let v = assert_error(
        app.post(
            "/api/v1/auth/register",
            None,
            &json!({"username": "longpass", "email": "long@example.test", "password": long}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        v["error"]["details"]["fields"]["password"].is_string(),
        "{v}"
    );
    assert_eq!(
        app.scalar_i64("select count(*) from app_user where username = 'longpass'")
            .await,
        0
    );
    // 72 bytes is the limit, and it signs in with exactly those bytes.
    let exact = "p".repeat(72);
    let (status, v) = body(
        app.post(
            "/api/v1/auth/register",
            None,
            &json!({"username": "maxpass", "email": "max@example.test", "password": exact}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let longer = format!("{exact}x");
    assert_error(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "maxpass", "password": longer}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let (status, _) = body(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "maxpass", "password": exact}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_unauthorized() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user.id.to_string(), "role": "customer", "jti": uuid::Uuid::new_v4(),
        "iat": now + 3600, "exp": now + 7200
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::jwt_secret()),
    )
    .expect("sign");

    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("PROBE{i}").as_bytes()).expect("method");
        app.client
            .request(method, app.url("/api/v1/sales"))
            .send()
            .await
            .expect("request");
    }

    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");

    assert!(!text.contains("PROBE"), "a made-up method became a label");
    assert!(text.contains("method=\"OTHER\""), "counted as OTHER");
}

#[tokio::test]
async fn metrics_can_ask_for_a_bearer_token() {
    let token = "metrics-0123456789abcdef";
    let app =
        crate::helpers::spawn_app_with(|s| s.metrics_token = Some(token.to_string().into())).await;

    assert_error(app.get("/metrics", None).await, 401, "unauthorized").await;
    assert_error(
        app.get("/metrics", Some("wrong-token")).await,
        401,
        "unauthorized",
    )
    .await;
    let resp = app.get("/metrics", Some(token)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp
        .text()
        .await
        .expect("text")
        .contains("flashsale_http_requests_total"));
}

#[tokio::test]
async fn answers_are_not_sniffed_and_signed_in_answers_are_not_stored() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;

    let open = app.get("/api/v1/sales", None).await;
    let mine = app.get("/api/v1/orders", Some(&user.token)).await;
    let link = app
        .client
        .get(app.url("/api/v1/auth/verify?token=nope"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET");

    for resp in [&open, &mine, &link] {
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{}",
            resp.url()
        );
    }
    assert_eq!(mine.headers()["cache-control"], "no-store");
    assert!(open
        .headers()
        .get("cache-control")
        .is_none_or(|v| v != "no-store"));
    let csp = link.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("default-src 'none'"), "{csp}");
}

#[tokio::test]
async fn verification_and_reset_emails_are_limited_per_account_and_address() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;

    let mut answers = Vec::new();
    for _ in 0..4 {
        let resp = app
            .post("/api/v1/auth/verify/resend", Some(&user.token), &json!({}))
            .await;
        answers.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(answers, [202, 202, 202, 429]);

    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            app.post("/api/v1/auth/forgot", None, &json!({"email": email}))
                .await
                .status()
                .as_u16()
        }
    };
    let mut same = Vec::new();
    for _ in 0..4 {
        same.push(forgot("Someone@Example.test").await);
    }
    assert_eq!(same, [202, 202, 202, 429], "per address, whatever its case");
    assert_eq!(
        forgot("other@example.test").await,
        202,
        "another address is not held back"
    );
    // Queued emails stay bounded by the limit, not by how often one asks.
    let queued = app
        .scalar_i64(&format!(
            "select count(*) from outbox where kind = 'verify_email' and user_id = {}",
            user.id
        ))
        .await;
    assert!(queued <= 3, "{queued} verification emails queued");
}

#[tokio::test]
async fn the_embedded_clusters_log_is_the_owners_only() {
    let _app = spawn_app().await; // the cluster runs
    let Some(dir) = crate::helpers::embedded_data_dir() else {
        return; // a cluster of the operator's: its log is theirs to guard
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("postgres.log"))
        .expect("the server log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Signs in through the API; returns (access, refresh).
async fn sign_in(
    app: &crate::helpers::TestApp,
    username: &str,
    password: &str,
) -> (String, String) {
    let (status, v) = body(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": username, "password": password}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    (
        v["access_token"].as_str().expect("access").to_string(),
        v["refresh_token"].as_str().expect("refresh").to_string(),
    )
}

#[tokio::test]
async fn changing_ones_password_ends_the_other_sessions() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;
    let (here, _) = sign_in(&app, &user.username, PASSWORD).await;
    let (there, there_refresh) = sign_in(&app, &user.username, PASSWORD).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let wrong = assert_error(
        app.post(
            "/api/v1/me/password",
            Some(&here),
            &change("not-it-at-all", "brand-new-pass"),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        wrong["error"]["details"]["fields"]["current_password"].is_string(),
        "{wrong}"
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&there)).await.status(),
        200,
        "nothing changed yet"
    );

    let resp = app
        .post(
            "/api/v1/me/password",
            Some(&here),
            &change(PASSWORD, "brand-new-pass"),
        )
        .await;
    assert_eq!(resp.status(), 204);

    assert_eq!(
        app.get("/api/v1/me", Some(&here)).await.status(),
        200,
        "this session stays"
    );
    assert_error(
        app.get("/api/v1/me", Some(&there)).await,
        401,
        "token_revoked",
    )
    .await;
    assert_error(
        app.post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": there_refresh}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": PASSWORD}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    sign_in(&app, &user.username, "brand-new-pass").await;
}

#[tokio::test]
async fn the_demo_admin_gets_a_password_of_its_own_and_the_shoppers_keep_the_public_one() {
    let app = spawn_app().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .arg("seed")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().await)
        .env(
            "JWT_SECRET",
            std::str::from_utf8(crate::helpers::jwt_secret()).unwrap(),
        )
        .env(
            "PAYMENT_WEBHOOK_SECRET",
            std::str::from_utf8(crate::helpers::WEBHOOK_SECRET).unwrap(),
        )
        .env("BCRYPT_COST", "4")
        .output()
        .await
        .expect("run flashsale seed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo admin: admin (password "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no admin password printed: {stdout}"));

    assert_error(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "admin", "password": "Satu123"}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    for (username, password) in [("admin", admin_password), ("user1", "Satu123")] {
        let (status, v) = body(
            app.post(
                "/api/v1/auth/login",
                None,
                &json!({"username": username, "password": password}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{username}: {v}");
    }
}
