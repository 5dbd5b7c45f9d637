//! What accounts and tokens need, apart from the rest of the application:
//! registered as a `web::Data` of its own, so the auth service and the
//! extractors depend on this and nothing wider.

use std::net::IpAddr;
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;

use super::cache::AuthCache;
use super::JwtKeys;
use crate::config::AppSettings;
use crate::db::Db;
use crate::error::ApiError;
use crate::limits::{keyed_limiter, rate_limited};

/// The pool, keys, cache, costs and lifetimes of the auth service.
pub struct AuthContext {
    pub pool: Db,
    pub jwt: JwtKeys,
    /// Users and revoked tokens, kept in step across instances.
    pub cache: AuthCache,
    /// Login, register, refresh and reset attempts per client IP (per process).
    pub limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Verification emails asked for, per account (per process): every one
    /// goes out through the shared send rate, so one account must not be
    /// able to crowd out everyone's order emails.
    pub resend_limiter: DefaultKeyedRateLimiter<i64>,
    /// Reset emails asked for, per address (per process), beside the per-IP
    /// limit: the same for every address, so it tells nothing of accounts.
    pub forgot_limiter: DefaultKeyedRateLimiter<String>,
    pub bcrypt_cost: u32,
    pub refresh_token_ttl: Duration,
    pub verify_token_ttl: Duration,
    pub reset_token_ttl: Duration,
}

impl AuthContext {
    /// The context of a server with these settings and this signing secret.
    pub fn new(pool: Db, settings: &AppSettings, jwt_secret: &[u8]) -> Self {
        AuthContext {
            pool,
            jwt: JwtKeys::new(jwt_secret, settings.access_token_ttl),
            cache: AuthCache::default(),
            limiter: keyed_limiter(settings.auth_rate),
            resend_limiter: governor::RateLimiter::keyed(email_quota()),
            forgot_limiter: governor::RateLimiter::keyed(email_quota()),
            bcrypt_cost: settings.bcrypt_cost,
            refresh_token_ttl: settings.refresh_token_ttl,
            verify_token_ttl: settings.email.verify_token_ttl,
            reset_token_ttl: settings.email.reset_token_ttl,
        }
    }

    /// `rate_limited` when this client IP exceeds the auth quota.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.limiter.check_key(&ip).map_err(rate_limited)
    }

    /// `rate_limited` when this account asked for too many verification
    /// emails.
    pub fn check_resend(&self, user_id: i64) -> Result<(), ApiError> {
        self.resend_limiter
            .check_key(&user_id)
            .map_err(rate_limited)
    }

    /// `rate_limited` when this address was sent too many reset emails.
    pub fn check_forgot(&self, email: &str) -> Result<(), ApiError> {
        self.forgot_limiter
            .check_key(&email.to_lowercase())
            .map_err(rate_limited)
    }

    /// Forgets idle keys of every limiter, so memory stays bounded.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.resend_limiter.retain_recent();
        self.forgot_limiter.retain_recent();
    }
}

/// Emails one account or address may ask for: [`EMAILS_AT_ONCE`] at once,
/// then one every [`EMAIL_EVERY`].
fn email_quota() -> governor::Quota {
    governor::Quota::with_period(EMAIL_EVERY)
        .unwrap_or_else(|| governor::Quota::per_minute(std::num::NonZeroU32::MIN))
        .allow_burst(EMAILS_AT_ONCE)
}

/// Emails an account or address may ask for at once.
pub const EMAILS_AT_ONCE: std::num::NonZeroU32 = std::num::NonZeroU32::new(3).unwrap();
/// Then one more each this often.
pub const EMAIL_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
