//! Accounts and tokens: register, login, refresh rotation, logout, `/me`, the
//! per-IP rate limit and how passwords are stored.

use flashsale::config::Rate;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp};

mod families;
mod hashing;

pub(super) const GOOD_PASSWORD: &str = "a-long-enough-password";

fn registration(username: &str, email: &str) -> Value {
    json!({"username": username, "email": email, "password": GOOD_PASSWORD})
}

/// Registers an account and returns the session body.
pub(super) async fn register(app: &TestApp, username: &str, email: &str) -> Value {
    let (status, v) = body(
        app.post(
            "/api/v1/auth/register",
            None,
            &registration(username, email),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "register {username}: {v}");
    v
}

pub(super) async fn login(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": password}),
    )
    .await
}

pub(super) async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is a string in {v}"))
}

/// Asserts the shape shared by register, login and refresh answers.
fn assert_session(v: &Value, username: &str) {
    assert_eq!(v["token_type"], "Bearer", "{v}");
    assert_eq!(
        v["expires_in"], 900,
        "the access token lives the configured 15 min: {v}"
    );
    assert!(!str_of(v, "access_token").is_empty(), "{v}");
    assert!(!str_of(v, "refresh_token").is_empty(), "{v}");
    assert_ne!(v["access_token"], v["refresh_token"], "{v}");
    assert_eq!(v["user"]["username"], username, "{v}");
    assert!(v["user"]["id"].is_i64(), "{v}");
    assert!(
        v["user"].get("password_hash").is_none(),
        "never a hash: {v}"
    );
}

async fn user_rows(app: &TestApp) -> i64 {
    app.scalar_i64("select count(*) from app_user").await
}

#[tokio::test]
async fn register_returns_201_with_a_usable_session_for_a_new_customer() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let resp = app
        .post(
            "/api/v1/auth/register",
            None,
            &registration("alice", "alice@example.test"),
        )
        .await;

    // Assert
    let (status, v) = body(resp).await;
    assert_eq!(status, 201, "{v}");
    assert_session(&v, "alice");
    assert_eq!(v["user"]["email"], "alice@example.test");
    assert_eq!(v["user"]["role"], "customer", "new accounts are customers");
    let (status, me) = body(
        app.get("/api/v1/me", Some(str_of(&v, "access_token")))
            .await,
    )
    .await;
    assert_eq!(status, 200, "the new access token works: {me}");
    assert_eq!(me["id"], v["user"]["id"]);
    assert_eq!(user_rows(&app).await, 1);
}

#[tokio::test]
async fn registering_a_taken_username_in_another_case_returns_409_username_taken() {
    // Arrange
    let app = spawn_app().await;
    register(&app, "Alice", "alice@example.test").await;

    // Act
    let resp = app
        .post(
            "/api/v1/auth/register",
            None,
            &registration("aLICE", "someone.else@example.test"),
        )
        .await;

    // Assert
    assert_error(resp, 409, "username_taken").await;
    assert_eq!(user_rows(&app).await, 1, "no second account");
}

#[tokio::test]
async fn registering_a_taken_email_returns_409_email_taken() {
    // Arrange
    let app = spawn_app().await;
    register(&app, "alice", "alice@example.test").await;

    for email in ["alice@example.test", "ALICE@Example.TEST"] {
        // Act
        let resp = app
            .post("/api/v1/auth/register", None, &registration("bob", email))
            .await;

        // Assert
        assert_error(resp, 409, "email_taken").await;
    }
    assert_eq!(user_rows(&app).await, 1, "no second account");
}

#[tokio::test]
async fn login_by_username_or_by_email_returns_200_with_a_session() {
    // Arrange
    let app = spawn_app().await;
    let registered = register(&app, "carol", "carol@example.test").await;

    for login_name in ["carol", "CAROL", "carol@example.test", "Carol@Example.Test"] {
        // Act
        let (status, v) = body(login(&app, login_name, GOOD_PASSWORD).await).await;

        // Assert
        assert_eq!(status, 200, "login as {login_name}: {v}");
        assert_session(&v, "carol");
        assert_eq!(v["user"]["id"], registered["user"]["id"]);
        let me = app
            .get("/api/v1/me", Some(str_of(&v, "access_token")))
            .await;
        assert_eq!(me.status().as_u16(), 200, "login as {login_name}");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401_invalid_credentials() {
    // Arrange
    let app = spawn_app().await;
    register(&app, "dave", "dave@example.test").await;

    // Act
    let wrong_password = login(&app, "dave", "not-the-password").await;
    let unknown_user = login(&app, "nobody-here", GOOD_PASSWORD).await;
    let unknown_email = login(&app, "nobody@example.test", GOOD_PASSWORD).await;

    // Assert
    let a = assert_error(wrong_password, 401, "invalid_credentials").await;
    let b = assert_error(unknown_user, 401, "invalid_credentials").await;
    let c = assert_error(unknown_email, 401, "invalid_credentials").await;
    assert_eq!(a, b, "the answers must not tell which usernames exist");
    assert_eq!(a, c, "the answers must not tell which emails exist");
}

#[tokio::test]
async fn refresh_returns_a_new_pair_and_the_old_refresh_token_dies() {
    // Arrange
    let app = spawn_app().await;
    let first = register(&app, "erin", "erin@example.test").await;
    let old_refresh = str_of(&first, "refresh_token");

    // Act
    let (status, second) = body(refresh(&app, old_refresh).await).await;

    // Assert
    assert_eq!(status, 200, "{second}");
    assert_session(&second, "erin");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    assert_ne!(second["access_token"], first["access_token"], "new token");
    let me = app
        .get("/api/v1/me", Some(str_of(&second, "access_token")))
        .await;
    assert_eq!(me.status().as_u16(), 200, "the new access token works");
    let (status, third) = body(refresh(&app, str_of(&second, "refresh_token")).await).await;
    assert_eq!(status, 200, "the new refresh token works in turn: {third}");
    assert_error(refresh(&app, old_refresh).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn an_unknown_refresh_token_returns_401_unauthorized() {
    // Arrange
    let app = spawn_app().await;

    for token in ["", "not-a-token", &"f".repeat(64), &"x".repeat(10_000)] {
        // Act
        let resp = refresh(&app, token).await;

        // Assert
        assert_error(resp, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn logout_returns_204_and_kills_the_access_token_and_its_refresh_token() {
    // Arrange
    let app = spawn_app().await;
    let session = register(&app, "frank", "frank@example.test").await;
    let access = str_of(&session, "access_token");
    let refresh_token = str_of(&session, "refresh_token");

    // Act
    let resp = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(access)
        .send()
        .await
        .expect("POST logout");

    // Assert
    assert_eq!(resp.status().as_u16(), 204);
    assert_error(
        app.get("/api/v1/me", Some(access)).await,
        401,
        "token_revoked",
    )
    .await;
    assert_error(refresh(&app, refresh_token).await, 401, "unauthorized").await;
    let again = app
        .post("/api/v1/auth/logout", Some(access), &json!({}))
        .await;
    assert_error(again, 401, "token_revoked").await;
}

#[tokio::test]
async fn logout_leaves_the_users_other_sessions_alone() {
    // Arrange
    let app = spawn_app().await;
    let phone = register(&app, "gina", "gina@example.test").await;
    let (status, laptop) = body(login(&app, "gina", GOOD_PASSWORD).await).await;
    assert_eq!(status, 200, "{laptop}");

    // Act
    let resp = app
        .post(
            "/api/v1/auth/logout",
            Some(str_of(&phone, "access_token")),
            &json!({}),
        )
        .await;

    // Assert
    assert_eq!(resp.status().as_u16(), 204);
    let me = app
        .get("/api/v1/me", Some(str_of(&laptop, "access_token")))
        .await;
    assert_eq!(me.status().as_u16(), 200, "the other session still works");
    let (status, v) = body(refresh(&app, str_of(&laptop, "refresh_token")).await).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn me_returns_exactly_the_public_fields_of_the_user() {
    // Arrange
    let app = spawn_app().await;
    let session = register(&app, "hank", "hank@example.test").await;

    // Act
    let (status, me) = body(
        app.get("/api/v1/me", Some(str_of(&session, "access_token")))
            .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{me}");
    let mut keys: Vec<&str> = me
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "email", "id", "role", "username"]);
    assert_eq!(me["id"], session["user"]["id"]);
    assert_eq!(me["username"], "hank");
    assert_eq!(me["email"], "hank@example.test");
    assert_eq!(me["role"], "customer");
    chrono::DateTime::parse_from_rfc3339(str_of(&me, "created_at")).expect("RFC 3339");
    assert!(
        !me.to_string().contains("$2"),
        "no bcrypt hash anywhere: {me}"
    );
}

#[tokio::test]
async fn passwords_are_stored_as_bcrypt_hashes() {
    // Arrange
    let app = spawn_app().await;

    // Act
    register(&app, "ivy", "ivy@example.test").await;

    // Assert
    let hash: String =
        sqlx::query_scalar("select password_hash from app_user where username = 'ivy'")
            .fetch_one(&app.pool)
            .await
            .expect("the row");
    assert!(hash.starts_with("$2"), "bcrypt, got {hash:?}");
    assert!(!hash.contains(GOOD_PASSWORD), "not the password itself");
    assert!(
        bcrypt::verify(GOOD_PASSWORD, &hash).expect("a readable bcrypt hash"),
        "the hash is of the password"
    );
}

#[tokio::test]
async fn a_burst_of_logins_from_one_ip_is_rate_limited_with_retry_after() {
    // Arrange: one per second, bursts of two.
    let app = spawn_app_with(|s| s.auth_rate = Rate::new(1, 2)).await;
    sqlx::query(
        "insert into app_user (username, email, password_hash)
         values ('jo', 'jo@example.test', $1)",
    )
    .bind(bcrypt::hash(GOOD_PASSWORD, 4).expect("hash"))
    .execute(&app.pool)
    .await
    .expect("insert user");

    // Act: ten at once; at most two plus one per elapsed second may pass.
    let burst = (0..10).map(|_| login(&app, "jo", GOOD_PASSWORD));
    let responses = futures_util::future::join_all(burst).await;

    // Assert
    let mut limited = Vec::new();
    let mut passed = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => passed += 1,
            429 => limited.push(resp),
            other => panic!("a login answered {other}"),
        }
    }
    assert!(passed >= 1, "the first logins pass");
    assert!(!limited.is_empty(), "{passed} of 10 logins passed");
    for resp in limited {
        let retry_after = resp
            .headers()
            .get("retry-after")
            .expect("a Retry-After header")
            .to_str()
            .expect("ASCII")
            .to_string();
        let secs: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("whole seconds, got {retry_after:?}"));
        assert!(secs >= 1, "Retry-After {secs}");
        assert_error(resp, 429, "rate_limited").await;
    }
}
