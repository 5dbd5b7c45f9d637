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

/// The cost a bcrypt hash was made at (`$2b$12$…` → 12).
pub fn cost_of(hash: &str) -> Option<u32> {
    hash.parse::<bcrypt::HashParts>().ok().map(|p| p.get_cost())
}

/// The costs of the extra checks that bring a check against a hash of cost
/// `stored` up to the work of one at `cost`: bcrypt's work doubles with each
/// step of cost, and `stored, stored + 1, …, cost - 1` add up to
/// `2^cost - 2^stored`. None when the stored hash costs as much or more (a
/// cost lowered since is caught up as each account signs in).
pub fn top_up(stored: u32, cost: u32) -> std::ops::Range<u32> {
    stored..cost.max(stored)
}

/// Checks a password against a stored hash with the work of a check at
/// `cost`, whatever the stored hash's own cost, so that an account whose
/// hash predates a raised `BCRYPT_COST` takes as long to refuse as an
/// unknown user, whose check ([`verify_dummy`]) is at `cost`.
pub async fn verify_at(password: String, hash: String, cost: u32) -> anyhow::Result<bool> {
    let Some(stored) = cost_of(&hash) else {
        // Unreadable: a mismatch, after the work of a readable one.
        verify_dummy(password, cost).await?;
        return Ok(false);
    };
    let ok = verify(password.clone(), hash).await?;
    for c in top_up(stored, cost) {
        verify_dummy(password.clone(), c).await?;
    }
    Ok(ok)
}

/// Spends the same time as a real check when the username does not exist, so
/// response times do not tell which usernames are registered.
pub async fn verify_dummy(password: String, cost: u32) -> anyhow::Result<()> {
    verify(password, dummy(cost).await?).await.map(|_| ())
}

/// A hash at `cost` of no one's password, made once per cost.
async fn dummy(cost: u32) -> anyhow::Result<String> {
    static DUMMIES: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cached = DUMMIES
        .get_or_init(Default::default)
        .lock()
        .ok()
        .and_then(|m| m.get(&cost).cloned());
    if let Some(h) = cached {
        return Ok(h);
    }
    let h = hash("not a real password".into(), cost).await?;
    if let Ok(mut m) = DUMMIES.get_or_init(Default::default).lock() {
        m.insert(cost, h.clone());
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bcrypt's work at a cost, in key expansions.
    fn work(cost: u32) -> u64 {
        1 << cost
    }

    #[test]
    fn a_cheaper_stored_hash_is_topped_up_to_the_configured_work() {
        for cost in 4..=14 {
            for stored in 4..=cost {
                let total = work(stored) + top_up(stored, cost).map(work).sum::<u64>();
                assert_eq!(total, work(cost), "stored {stored}, configured {cost}");
            }
        }
        assert!(top_up(12, 10).is_empty(), "a dearer hash is not topped up");
    }

    #[test]
    fn the_cost_is_read_from_the_hash() {
        let h = bcrypt::hash("pw", 5).unwrap();
        assert_eq!(cost_of(&h), Some(5));
        assert_eq!(cost_of("not a hash"), None);
    }
}
