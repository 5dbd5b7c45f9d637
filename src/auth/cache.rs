//! What the extractor needs to know about a token's user, kept in memory.
//!
//! Checking every request against the database would put a query in front of
//! every purchase. Instead each process keeps the users it has seen (role,
//! disabled) for a short time and every logged-out token id until it expires.
//! Changes are announced to all instances with `NOTIFY flashsale_auth`
//! (`jti:<uuid>` on logout, `user:<id>` when an admin changes a role or
//! disables an account) and applied at once; after a lost listening
//! connection the cache is dropped and the revocations reloaded, so a missed
//! announcement never keeps a revoked token alive.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sqlx::PgExecutor;
use uuid::Uuid;

use super::Role;
use crate::db::Db;

/// The channel on which auth changes are announced. [`announce`] is the one
/// place that writes to it, and [`AuthCache::apply`] the one that reads it.
pub const CHANNEL: &str = "flashsale_auth";

/// A change every instance must hear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// An access token was logged out; `exp` is its expiry (unix seconds).
    Revoked { jti: Uuid, exp: i64 },
    /// A user's role, status or password changed: forget what is cached.
    UserChanged(i64),
}

impl Announcement {
    fn payload(&self) -> String {
        match self {
            Announcement::Revoked { jti, exp } => format!("jti:{jti}:{exp}"),
            Announcement::UserChanged(id) => format!("user:{id}"),
        }
    }

    fn parse(payload: &str) -> Option<Announcement> {
        if let Some(rest) = payload.strip_prefix("jti:") {
            let (jti, exp) = rest.split_once(':')?;
            Some(Announcement::Revoked {
                jti: jti.parse().ok()?,
                exp: exp.parse().ok()?,
            })
        } else {
            let id = payload.strip_prefix("user:")?;
            Some(Announcement::UserChanged(id.parse().ok()?))
        }
    }
}

/// Announces a change to every instance (this one included). Inside a
/// transaction the announcement is sent when it commits, and never if it
/// rolls back.
pub async fn announce(conn: impl PgExecutor<'_>, a: Announcement) -> Result<(), sqlx::Error> {
    crate::db::notify(conn, CHANNEL, &a.payload()).await
}

/// How long a user's role and status are trusted without asking again (a
/// bound for the case where an announcement is lost without the connection
/// being noticed as lost).
const USER_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct CachedUser {
    role: Role,
    disabled: bool,
    at: Instant,
}

/// Users and revoked tokens of one process.
#[derive(Default)]
pub struct AuthCache {
    users: RwLock<HashMap<i64, CachedUser>>,
    /// Revoked token ids and their expiry (unix seconds).
    revoked: RwLock<HashMap<Uuid, i64>>,
}

impl AuthCache {
    /// Whether a token id was logged out.
    pub fn is_revoked(&self, jti: &Uuid) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains_key(jti))
            .unwrap_or(false)
    }

    /// Records a logged-out token.
    pub fn revoke(&self, jti: Uuid, exp: i64) {
        if let Ok(mut r) = self.revoked.write() {
            r.insert(jti, exp);
        }
    }

    /// A user's role and whether they are disabled, if fresh.
    pub fn user(&self, id: i64) -> Option<(Role, bool)> {
        let users = self.users.read().ok()?;
        let u = users.get(&id)?;
        (u.at.elapsed() < USER_TTL).then_some((u.role, u.disabled))
    }

    /// Remembers a user read from the database.
    pub fn put_user(&self, id: i64, role: Role, disabled: bool) {
        if let Ok(mut u) = self.users.write() {
            u.insert(
                id,
                CachedUser {
                    role,
                    disabled,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Forgets a user (their role or status changed).
    pub fn forget_user(&self, id: i64) {
        if let Ok(mut u) = self.users.write() {
            u.remove(&id);
        }
    }

    /// Applies an announcement.
    pub fn apply(&self, payload: &str) {
        match Announcement::parse(payload) {
            Some(Announcement::Revoked { jti, exp }) => self.revoke(jti, exp),
            Some(Announcement::UserChanged(id)) => self.forget_user(id),
            None => tracing::warn!(payload, "unreadable auth announcement"),
        }
    }

    /// Drops every cached user and reloads the revocations from the database
    /// (at start, and whenever announcements may have been missed).
    pub async fn resync(&self, pool: &Db) -> Result<(), sqlx::Error> {
        let rows: Vec<(Uuid, f64)> = sqlx::query_as(
            "select jti, extract(epoch from expires_at)::float8 from revoked_token where expires_at > now()",
        )
        .fetch_all(pool)
        .await?;
        if let Ok(mut u) = self.users.write() {
            u.clear();
        }
        if let Ok(mut r) = self.revoked.write() {
            for (jti, exp) in rows {
                r.insert(jti, exp as i64);
            }
        }
        Ok(())
    }

    /// Drops revocations of tokens that have expired anyway, and stale users.
    pub fn prune(&self) {
        let now = chrono::Utc::now().timestamp();
        if let Ok(mut r) = self.revoked.write() {
            r.retain(|_, exp| *exp + 60 >= now);
        }
        if let Ok(mut u) = self.users.write() {
            u.retain(|_, c| c.at.elapsed() < USER_TTL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back_as_written() {
        for a in [
            Announcement::Revoked {
                jti: Uuid::new_v4(),
                exp: 1_900_000_000,
            },
            Announcement::UserChanged(42),
        ] {
            assert_eq!(Announcement::parse(&a.payload()), Some(a));
        }
        assert_eq!(Announcement::parse("user:x"), None);
        assert_eq!(Announcement::parse("jti:nope"), None);
    }
}
