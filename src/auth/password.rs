//! bcrypt hashing on the blocking thread pool, so a login never stalls the
//! async workers.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::Context;

/// Hashes a password at `cost`.
pub async fn hash(password: String, cost: u32) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .context("the hashing task failed")?
        .context("bcrypt failed")
}

/// Checks a password against a stored hash. An unreadable hash counts as a
/// mismatch.
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .context("the verification task failed")
}

/// Spends the same time as a real check when the username does not exist, so
/// response times do not tell which usernames are registered.
pub async fn verify_dummy(password: String, cost: u32) -> anyhow::Result<()> {
    static DUMMIES: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cached = DUMMIES
        .get_or_init(Default::default)
        .lock()
        .ok()
        .and_then(|m| m.get(&cost).cloned());
    let dummy = match cached {
        Some(h) => h,
        None => {
            let h = hash("not a real password".into(), cost).await?;
            if let Ok(mut m) = DUMMIES.get_or_init(Default::default).lock() {
                m.insert(cost, h.clone());
            }
            h
        }
    };
    verify(password, dummy).await.map(|_| ())
}
