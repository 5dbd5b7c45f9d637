//! Idempotency keys (`Idempotency-Key`): the first answer for a (user, key)
//! is kept for [`KEEP`] with a fingerprint of its request, and replayed to
//! every retry; the same key on a different request is refused; a retry that
//! arrives while the first is still being served waits for it, or hears
//! `request_in_progress`. Only one request can claim a key, so two requests
//! with one key never both reach the purchase engine (not even one batch).

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::error::ApiError;

/// How long an answer is kept.
pub const KEEP: &str = "24 hours";
/// A claim not completed in this long is taken to be abandoned (its server
/// died mid-request) and may be claimed again. What it may have done is
/// safe to redo: one live order per shopper and sale stops a second order.
const ABANDONED: &str = "30 seconds";
/// How long a retry waits for the first request to finish.
const WAIT: Duration = Duration::from_secs(5);

/// A checked `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: &[u8]) -> Result<Key, String> {
        if raw.is_empty() || raw.len() > 255 {
            return Err("must be 1 to 255 characters".into());
        }
        if !raw.iter().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters (no spaces)".into());
        }
        Ok(Key(String::from_utf8_lossy(raw).into_owned()))
    }
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// What claiming a key found.
pub enum Claim {
    /// The key is this request's: serve it, then [`complete`] or [`abandon`].
    Mine,
    /// The first answer, to replay.
    Replay(Answer),
}

/// The fingerprint of a request: its method, path and body (as the
/// canonical JSON of what it asked for).
pub fn fingerprint(method: &str, path: &str, body: &Value) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body.to_string().as_bytes());
    h.finalize().to_vec()
}

/// Claims `key` for `user`'s request, or finds the answer to replay. Waits
/// up to a few seconds for a request with the same key still being served;
/// `request_in_progress` after that; `idempotency_key_reused` when the key
/// answered a different request.
pub async fn claim(
    pool: &Db,
    user_id: i64,
    key: &Key,
    fingerprint: &[u8],
) -> Result<Claim, ApiError> {
    let started = tokio::time::Instant::now();
    loop {
        // A new key, or one whose answer is older than KEEP, or an abandoned
        // claim, becomes this request's.
        let mine: Option<bool> = sqlx::query_scalar(&format!(
            "insert into idempotency_key (user_id, key, fingerprint) values ($1, $2, $3)
             on conflict (user_id, key) do update
                set fingerprint = excluded.fingerprint, status = null, body = null,
                    created_at = now()
              where idempotency_key.created_at < now() - interval '{KEEP}'
                 or (idempotency_key.status is null
                     and idempotency_key.created_at < now() - interval '{ABANDONED}'
                     and idempotency_key.fingerprint = excluded.fingerprint)
             returning true"
        ))
        .bind(user_id)
        .bind(&key.0)
        .bind(fingerprint)
        .fetch_optional(pool)
        .await?;
        if mine.is_some() {
            return Ok(Claim::Mine);
        }
        let existing: Option<(Vec<u8>, Option<i16>, Option<Value>)> = sqlx::query_as(
            "select fingerprint, status, body from idempotency_key where user_id = $1 and key = $2",
        )
        .bind(user_id)
        .bind(&key.0)
        .fetch_optional(pool)
        .await?;
        match existing {
            // Deleted meanwhile (its request ended retryably): claim again.
            None => continue,
            Some((f, _, _)) if f != fingerprint => return Err(ApiError::IdempotencyKeyReused),
            Some((_, Some(status), body)) => {
                return Ok(Claim::Replay(Answer {
                    status: status as u16,
                    body: body.unwrap_or(Value::Null),
                }))
            }
            Some((_, None, _)) if started.elapsed() >= WAIT => {
                return Err(ApiError::RequestInProgress(1))
            }
            Some((_, None, _)) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Stores the answer of a claimed key.
pub async fn complete(
    pool: &Db,
    user_id: i64,
    key: &Key,
    answer: &Answer,
) -> Result<(), sqlx::Error> {
    sqlx::query("update idempotency_key set status = $3, body = $4 where user_id = $1 and key = $2")
        .bind(user_id)
        .bind(&key.0)
        .bind(answer.status as i16)
        .bind(&answer.body)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Gives up a claimed key whose request ended with a retryable answer
/// (`busy`, `rate_limited`): a retry with the key is served afresh.
pub async fn abandon(pool: &Db, user_id: i64, key: &Key) -> Result<(), sqlx::Error> {
    sqlx::query("delete from idempotency_key where user_id = $1 and key = $2 and status is null")
        .bind(user_id)
        .bind(&key.0)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Deletes answers older than [`KEEP`].
pub async fn sweep(pool: &Db) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(&format!(
        "delete from idempotency_key where created_at < now() - interval '{KEEP}'"
    ))
    .execute(pool)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_255_visible_ascii_characters() {
        assert!(Key::parse(b"order-2026-12-01/abc_1").is_ok());
        assert!(Key::parse(&[b'k'; 255]).is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 256][..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
        ] {
            assert!(Key::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fingerprint_tells_requests_apart() {
        let body = serde_json::json!({"quantity": 1});
        let a = fingerprint("POST", "/api/v1/sales/1/purchase", &body);
        assert_eq!(a, fingerprint("POST", "/api/v1/sales/1/purchase", &body));
        assert_ne!(a, fingerprint("POST", "/api/v1/sales/2/purchase", &body));
        let two = serde_json::json!({"quantity": 2});
        assert_ne!(a, fingerprint("POST", "/api/v1/sales/1/purchase", &two));
    }
}
