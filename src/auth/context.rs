//! What accounts and tokens need, apart from the rest of the application:
//! registered as a `web::Data` of its own, so the auth service and the
//! extractors depend on this and nothing wider.

use std::net::IpAddr;
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;
use sqlx::PgPool;

use super::cache::AuthCache;
use super::JwtKeys;
use crate::config::AppSettings;
use crate::error::ApiError;
use crate::limits::{keyed_limiter, rate_limited};

/// The pool, keys, cache, costs and lifetimes of the auth service.
pub struct AuthContext {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    /// Users and revoked tokens, kept in step across instances.
    pub cache: AuthCache,
    /// Login, register, refresh and reset attempts per client IP (per process).
    pub limiter: DefaultKeyedRateLimiter<IpAddr>,
    pub bcrypt_cost: u32,
    pub refresh_token_ttl: Duration,
    pub verify_token_ttl: Duration,
    pub reset_token_ttl: Duration,
}

impl AuthContext {
    /// The context of a server with these settings and this signing secret.
    pub fn new(pool: PgPool, settings: &AppSettings, jwt_secret: &[u8]) -> Self {
        AuthContext {
            pool,
            jwt: JwtKeys::new(jwt_secret, settings.access_token_ttl),
            cache: AuthCache::default(),
            limiter: keyed_limiter(settings.auth_rate),
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
}
