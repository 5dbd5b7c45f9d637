//! Stored password hashes follow `BCRYPT_COST`: a hash of another cost is
//! replaced when its password is next shown to be right, and never on a
//! wrong one. (That a check costs the configured work whatever the stored
//! hash's cost is shown by `password`'s unit tests, by counting bcrypt's
//! rounds, not by timing.)

use flashsale::auth::Role;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app_with, TestApp, PASSWORD};

async fn stored_hash(app: &TestApp, user_id: i64) -> String {
    sqlx::query_scalar("select password_hash from app_user where id = $1")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .expect("the user")
}

#[tokio::test]
async fn signing_in_rehashes_a_password_stored_at_another_cost() {
    // Arrange: the cost was raised to 5 over an account hashed at 4.
    let app = spawn_app_with(|s| s.bcrypt_cost = 5).await;
    let user = app.create_user(Role::Customer).await;
    assert!(stored_hash(&app, user.id).await.starts_with("$2b$04$"));
    let login = |password: &'static str| {
        let body = json!({"username": user.username, "password": password});
        let app = &app;
        async move { app.post("/api/v1/auth/login", None, &body).await }
    };

    // Act and assert: a wrong password changes nothing.
    assert_error(login("not-the-password").await, 401, "invalid_credentials").await;
    assert!(stored_hash(&app, user.id).await.starts_with("$2b$04$"));

    // The right one replaces the hash with one at the configured cost.
    assert_eq!(login(PASSWORD).await.status().as_u16(), 200);
    let hash = stored_hash(&app, user.id).await;
    assert!(hash.starts_with("$2b$05$"), "{hash}");
    assert!(bcrypt::verify(PASSWORD, &hash).expect("readable"));
    assert_eq!(
        login(PASSWORD).await.status().as_u16(),
        200,
        "still signs in"
    );
    assert_eq!(stored_hash(&app, user.id).await, hash, "rehashed once only");
}
