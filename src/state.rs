//! The state every handler shares, built once per server when the
//! application is built. Auth has a context of its own
//! ([`AuthContext`](crate::auth::AuthContext)), registered beside this one.

use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use sqlx::PgPool;

use crate::config::AppSettings;
use crate::error::ApiError;
use crate::limits::{keyed_limiter, rate_limited};
use crate::live::Board;
use crate::metrics::Metrics;
use crate::purchase::PurchaseEngine;

/// Everything a handler may need apart from auth, shared by all workers.
pub struct AppState {
    pub pool: PgPool,
    pub settings: AppSettings,
    pub engine: PurchaseEngine,
    /// Live sale state: status, SSE, fail-fast refusals.
    pub board: Arc<Board>,
    /// Purchase attempts per user (per process).
    pub purchase_limiter: DefaultKeyedRateLimiter<i64>,
    pub metrics: Metrics,
    /// Base of the links in emails (`PUBLIC_URL`, or this server's address).
    pub public_url: String,
    /// Turns true when the server starts to stop: long-lived streams (SSE)
    /// end then, so a graceful stop need not wait out every open sale page.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// The state of a server on `pool`; links in emails start with
    /// `public_url`.
    pub fn new(pool: PgPool, settings: AppSettings, public_url: String) -> Self {
        let board = Board::new(pool.clone());
        AppState {
            engine: PurchaseEngine::new(pool.clone(), board.clone(), settings.purchase),
            board,
            purchase_limiter: keyed_limiter(settings.purchase_rate),
            metrics: Metrics::new(),
            public_url,
            closing: tokio::sync::watch::channel(false).0,
            settings,
            pool,
        }
    }

    /// `rate_limited` (counted as a purchase outcome) when this user exceeds
    /// the purchase quota.
    pub fn check_purchase_rate(&self, user_id: i64) -> Result<(), ApiError> {
        self.purchase_limiter.check_key(&user_id).map_err(|n| {
            self.metrics
                .purchases
                .with_label_values(&["rate_limited"])
                .inc();
            rate_limited(n)
        })
    }
}
