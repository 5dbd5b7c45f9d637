//! Refresh-token families: a sign-in and every refresh token descended from
//! it. Presenting a rotated-out token ends the family; logging out, or
//! changing the password, ends whole families, never just one token.

use serde_json::{json, Value};

use super::{login, refresh, register, str_of, GOOD_PASSWORD};
use crate::helpers::{assert_error, body, TestApp};

/// Trades a refresh token, which must work.
async fn rotate(app: &TestApp, session: &Value) -> Value {
    let (status, next) = body(refresh(app, str_of(session, "refresh_token")).await).await;
    assert_eq!(status, 200, "{next}");
    next
}

async fn me_status(app: &TestApp, session: &Value) -> u16 {
    app.get("/api/v1/me", Some(str_of(session, "access_token")))
        .await
        .status()
        .as_u16()
}

/// Live refresh tokens of the family that `session`'s refresh token is in.
async fn live_in_family(app: &TestApp, session: &Value) -> i64 {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(str_of(session, "refresh_token").as_bytes()).to_vec();
    sqlx::query_scalar(
        "select count(*) from refresh_token
          where revoked_at is null
            and family_id = (select family_id from refresh_token where token_hash = $1)",
    )
    .bind(hash)
    .fetch_one(&app.pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn presenting_a_rotated_refresh_token_ends_its_whole_family() {
    // Arrange: a session refreshed once, and another session of the account.
    let app = crate::helpers::spawn_app().await;
    let first = register(&app, "jules", "jules@example.test").await;
    let second = rotate(&app, &first).await;
    let (status, elsewhere) = body(login(&app, "jules", GOOD_PASSWORD).await).await;
    assert_eq!(status, 200, "{elsewhere}");
    let other_instance = app.another_instance().await;

    // Act: the first refresh token again, as a thief (or the victim) would.
    let replay = refresh(&app, str_of(&first, "refresh_token")).await;

    // Assert
    let v = assert_error(replay, 401, "unauthorized").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used already"),
        "{v}"
    );
    assert_error(
        refresh(&app, str_of(&second, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(live_in_family(&app, &second).await, 0);
    for s in [&first, &second] {
        for instance in [&app, &other_instance] {
            assert_error(
                instance
                    .get("/api/v1/me", Some(str_of(s, "access_token")))
                    .await,
                401,
                "token_revoked",
            )
            .await;
        }
    }
    assert_eq!(me_status(&app, &elsewhere).await, 200, "another sign-in");
    rotate(&app, &elsewhere).await;
}

#[tokio::test]
async fn two_refreshes_at_once_with_one_token_never_both_succeed() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let session = register(&app, "kit", "kit@example.test").await;
    let token = str_of(&session, "refresh_token");

    // Act: the same token, eight times at once.
    let answers = futures_util::future::join_all(
        (0..8).map(|_| async { body(refresh(&app, token).await).await }),
    )
    .await;

    // Assert: the first to take the session's lock rotates the token; each
    // of the others then finds it rotated, which is reuse, and the session
    // ends, the winner's new tokens included.
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(won.len(), 1, "exactly one refresh succeeds: {answers:?}");
    for (status, v) in &answers {
        assert!(
            *status == 200 || (*status == 401 && v["error"]["code"] == "unauthorized"),
            "{v}"
        );
    }
    let winner = won[0];
    assert_error(
        refresh(&app, str_of(winner, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        me_status(&app, winner).await,
        401,
        "its access token died too"
    );
    assert_eq!(live_in_family(&app, winner).await, 0);
}

#[tokio::test]
async fn logging_out_with_an_older_access_token_ends_the_sessions_newer_tokens() {
    // Arrange: a session refreshed twice, and another session.
    let app = crate::helpers::spawn_app().await;
    let first = register(&app, "lou", "lou@example.test").await;
    let second = rotate(&app, &first).await;
    let third = rotate(&app, &second).await;
    let (_, elsewhere) = body(login(&app, "lou", GOOD_PASSWORD).await).await;

    // Act: log out with the first access token, still alive.
    let resp = app
        .post(
            "/api/v1/auth/logout",
            Some(str_of(&first, "access_token")),
            &json!({}),
        )
        .await;

    // Assert
    assert_eq!(resp.status().as_u16(), 204);
    assert_error(
        refresh(&app, str_of(&third, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    for s in [&first, &second, &third] {
        assert_error(
            app.get("/api/v1/me", Some(str_of(s, "access_token"))).await,
            401,
            "token_revoked",
        )
        .await;
    }
    assert_eq!(me_status(&app, &elsewhere).await, 200, "another sign-in");
    rotate(&app, &elsewhere).await;
}

#[tokio::test]
async fn changing_the_password_from_an_older_access_token_keeps_this_session() {
    // Arrange: this session was refreshed since its first access token; an
    // older session elsewhere was too.
    let app = crate::helpers::spawn_app().await;
    let here = register(&app, "moss", "moss@example.test").await;
    let here_now = rotate(&app, &here).await;
    let (_, there) = body(login(&app, "moss", GOOD_PASSWORD).await).await;
    let there_now = rotate(&app, &there).await;

    // Act
    let resp = app
        .post(
            "/api/v1/me/password",
            Some(str_of(&here, "access_token")),
            &json!({"current_password": GOOD_PASSWORD, "new_password": "another-long-one"}),
        )
        .await;

    // Assert
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(me_status(&app, &here_now).await, 200);
    rotate(&app, &here_now).await;
    for s in [&there, &there_now] {
        assert_eq!(
            me_status(&app, s).await,
            401,
            "every token of the other session"
        );
    }
    assert_error(
        refresh(&app, str_of(&there_now, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
}
