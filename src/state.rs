//! The state every handler shares, built once per server when the
//! application is built. Auth has a context of its own
//! ([`AuthContext`](crate::auth::AuthContext)), registered beside this one.

use std::net::IpAddr;
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use sqlx::postgres::PgConnectOptions;

use crate::config::{AppSettings, PaymentProvider};
use crate::db::failover::Follower;
use crate::db::replica::Replica;
use crate::db::Db;
use crate::error::ApiError;
use crate::limits::{keyed_limiter, rate_limited};
use crate::live::Board;
use crate::metrics::Metrics;
use crate::payment::test_provider::TestProvider;
use crate::payment::{Payments, Provider};
use crate::purchase::PurchaseEngine;
use crate::queue::Queue;

/// Everything a handler may need apart from auth, shared by all workers.
pub struct AppState {
    pub pool: Db,
    /// Straight to the primary, for the `LISTEN` connection.
    pub listen_options: PgConnectOptions,
    /// What re-points it after a failover, when its URL names hosts to follow.
    pub listen_follower: Option<Arc<Follower>>,
    /// The streaming replica for reads that tolerate lag, if configured.
    pub replica: Option<Arc<Replica>>,
    pub settings: AppSettings,
    pub engine: PurchaseEngine,
    /// Live sale state: status, SSE, fail-fast refusals.
    pub board: Arc<Board>,
    /// The waiting rooms: joins and tickets.
    pub queue: Arc<Queue>,
    /// Purchase attempts per user (per process).
    pub purchase_limiter: DefaultKeyedRateLimiter<i64>,
    /// Purchase attempts per client IP (per process), when configured.
    pub purchase_ip_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    pub metrics: Metrics,
    /// Base of the links in emails (`PUBLIC_URL`, or this server's address).
    pub public_url: String,
    /// Payments for orders, through the configured provider.
    pub payments: Arc<Payments>,
    /// The built-in provider, when it is the configured one (its page and
    /// machine routes exist only then).
    pub test_provider: Option<Arc<TestProvider>>,
    /// Where this server's payment webhooks are delivered (its own route).
    pub webhook_url: String,
    /// Turns true when the server starts to stop: long-lived streams (SSE)
    /// end then, so a graceful stop need not wait out every open sale page.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// The state of a server on `pool`, listening with `listen`'s options
    /// (and follower); links in emails start with `public_url`.
    pub fn new(
        pool: Db,
        (listen_options, listen_follower): (PgConnectOptions, Option<Arc<Follower>>),
        replica: Option<Arc<Replica>>,
        settings: AppSettings,
        public_url: String,
        webhook_secret: &[u8],
        webhook_url: String,
    ) -> Self {
        let board = Board::new(pool.clone());
        let engine = PurchaseEngine::new(pool.clone(), board.clone(), settings.purchase);
        let test_provider = match settings.payment_provider {
            PaymentProvider::Test => Arc::new(TestProvider::new(pool.clone(), public_url.clone())),
        };
        let provider: Arc<dyn Provider> = test_provider.clone();
        AppState {
            payments: Arc::new(Payments::new(
                pool.clone(),
                provider,
                webhook_secret,
                engine.clone(),
            )),
            test_provider: Some(test_provider),
            webhook_url,
            engine,
            queue: Queue::new(pool.clone(), board.clone()),
            board,
            purchase_limiter: keyed_limiter(settings.purchase_rate),
            purchase_ip_limiter: settings.purchase_ip_rate.map(keyed_limiter),
            metrics: Metrics::new(),
            public_url,
            closing: tokio::sync::watch::channel(false).0,
            settings,
            pool,
            listen_options,
            listen_follower,
            replica,
        }
    }

    /// Where a read that tolerates lag goes: the replica while it is fresh,
    /// else the primary. Counted by role in `/metrics`.
    pub fn reads(&self) -> &Db {
        match self.replica.as_ref().and_then(|r| r.fresh()) {
            Some(db) => {
                self.metrics.reads.with_label_values(&["replica"]).inc();
                db
            }
            None => {
                self.metrics.reads.with_label_values(&["primary"]).inc();
                &self.pool
            }
        }
    }

    /// `rate_limited` (counted as a purchase outcome) when this user exceeds
    /// the purchase quota.
    /// The purchase limits: per client address (when configured), then per
    /// user.
    pub fn check_purchase_rate(&self, ip: IpAddr, user_id: i64) -> Result<(), ApiError> {
        if let Some(limiter) = &self.purchase_ip_limiter {
            limiter.check_key(&ip).map_err(|n| {
                self.metrics
                    .purchases
                    .with_label_values(&["rate_limited"])
                    .inc();
                rate_limited(n)
            })?;
        }
        self.purchase_limiter.check_key(&user_id).map_err(|n| {
            self.metrics
                .purchases
                .with_label_values(&["rate_limited"])
                .inc();
            rate_limited(n)
        })
    }
}
