//! Firing requests from a fixed number of connections and recording every
//! answer: its kind, status, error code, when it was sent and how long it took.
//!
//! This file is the recording side: the HTTP client with one method per kind
//! of request, and the ledger it writes. Purchases, and the routing around a
//! dead instance that every request goes through, are in `purchase`; carts
//! and their checkout in `cart`; the workers that share the connections out
//! are in `workers`.

mod cart;
mod pay;
mod purchase;
mod queue;
mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::environment::Environment;
use crate::scenario::Common;

pub use cart::{CheckoutEnd, CheckoutSuccess, ShortLine};
pub use purchase::never_sent;
use purchase::Lost;
pub use queue::TicketEnd;
pub use workers::{progress, run_for, run_jobs};

/// What a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A purchase on the (first, hot) sale.
    Purchase,
    /// A purchase on any other sale of the run.
    PurchaseOther,
    Status,
    Browse,
    Login,
    Health,
    /// `POST /orders/{id}/pay`: open the payment of a hold.
    Pay,
    /// The test provider's machine route deciding a charge.
    Decide,
    /// `PUT` or `DELETE /cart/items/{product_id}`: a line of a cart.
    Cart,
    /// `POST /cart/checkout`: a cart into one catalog order.
    Checkout,
    /// `POST /sales/{id}/queue`: joining a waiting room's line.
    Join,
    /// `GET /sales/{id}/queue`: reading one's ticket.
    Ticket,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Purchase => "purchase",
            Kind::PurchaseOther => "purchase_other",
            Kind::Login => "login",
            Kind::Status => "status",
            Kind::Browse => "browse",
            Kind::Health => "health",
            Kind::Pay => "pay",
            Kind::Decide => "decide",
            Kind::Cart => "cart",
            Kind::Checkout => "checkout",
            Kind::Join => "join",
            Kind::Ticket => "ticket",
        }
    }
}

/// One request and its answer. `status` 0 means no answer (timeout or lost
/// connection after sending). A request refused by every instance was sent
/// nowhere and has no sample (see [`Ledger::unreachable`]).
#[derive(Clone, Debug)]
pub struct Sample {
    pub kind: Kind,
    pub status: u16,
    pub code: Option<String>,
    /// Microseconds from the start of the load to sending.
    pub sent_us: u64,
    pub latency_us: u64,
}

/// A `201 Created` purchase.
#[derive(Clone, Debug)]
pub struct Success {
    pub sale_id: i64,
    pub user_id: i64,
    pub order_id: i64,
    /// Microseconds from the start of the load to the answer.
    pub done_us: u64,
    /// The instance (index into the targets) that answered.
    pub instance: usize,
}

/// Everything one run recorded.
#[derive(Default, Debug)]
pub struct Ledger {
    pub samples: Vec<Sample>,
    pub successes: Vec<Success>,
    /// Purchases whose outcome is unknown: (sale, user). Each was sent and
    /// then cut (or timed out) before its answer was read.
    pub unknown: Vec<(i64, i64)>,
    /// Purchases answered `busy` and then, retried, `already_purchased`:
    /// (sale, user). The order came of a commit whose outcome the engine could
    /// not learn in time; the buyer was told of it by the second answer.
    pub told_late: Vec<(i64, i64)>,
    /// Connections refused (nothing sent); each such request went on to the
    /// next instance.
    pub refused: u64,
    /// Requests that every instance refused: sent nowhere.
    pub unreachable: u64,
    /// Checkouts answered 201.
    pub checkouts: Vec<CheckoutSuccess>,
    /// Checkouts without a final answer after every try: the buyer's id.
    pub unknown_checkouts: Vec<i64>,
}

impl Ledger {
    pub fn merge(&mut self, other: Ledger) {
        self.samples.extend(other.samples);
        self.successes.extend(other.successes);
        self.unknown.extend(other.unknown);
        self.told_late.extend(other.told_late);
        self.refused += other.refused;
        self.unreachable += other.unreachable;
        self.checkouts.extend(other.checkouts);
        self.unknown_checkouts.extend(other.unknown_checkouts);
    }
}

/// How one purchase attempt ended.
#[derive(Debug)]
pub enum Attempt {
    Created,
    /// A final refusal (sold out, already purchased, outside the window, ...).
    Refused(String),
    /// Try again after this long (not started yet, rate limited, busy).
    Retry(Duration),
    /// No answer: the order may or may not exist.
    Unknown,
    /// A 5xx or an answer the API does not document.
    Broken,
}

/// The HTTP side of a run: one client, the targets, the clock.
#[derive(Clone)]
pub struct Load {
    client: reqwest::Client,
    targets: Arc<Vec<String>>,
    start: Instant,
    /// Told the clock's zero on every reset (the chaos schedule runs on it).
    announce: Option<Arc<watch::Sender<Option<Instant>>>>,
}

impl Load {
    /// A client for `connections` concurrent requests with a per-request
    /// timeout.
    pub fn new(targets: &[String], connections: usize, timeout: Duration) -> anyhow::Result<Load> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()?;
        Ok(Load {
            client,
            targets: Arc::new(targets.to_vec()),
            start: Instant::now(),
            announce: None,
        })
    }

    /// A load on `env`'s instances with the run's options, whose clock resets
    /// are announced on the environment's load clock.
    pub fn for_env(env: &Environment, c: &Common) -> anyhow::Result<Load> {
        let mut load = Load::new(&env.targets, c.connections, c.timeout)?;
        load.announce = Some(env.load_clock());
        Ok(load)
    }

    /// Restarts the run clock (call right before firing).
    pub fn reset_clock(&mut self) {
        self.start = Instant::now();
        if let Some(tx) = &self.announce {
            tx.send_replace(Some(self.start));
        }
    }

    /// Time since the run clock started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// A login with a username and password, recorded in `ledger`.
    pub async fn login(
        &self,
        target: usize,
        username: &str,
        password: &str,
        ledger: &mut Ledger,
    ) -> u16 {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let body = serde_json::json!({"username": username, "password": password});
        let result = self
            .send_routed(target, ledger, |base| {
                self.client
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(&body)
            })
            .await;
        let (status, code) = match result {
            Err(Lost::Unreachable) => return 0,
            Ok((r, _)) => {
                let status = r.status().as_u16();
                let v: Option<Value> = r.json().await.ok();
                (
                    status,
                    v.and_then(|v| v["error"]["code"].as_str().map(str::to_string)),
                )
            }
            Err(Lost::Cut) => (0, None),
        };
        ledger.samples.push(Sample {
            kind: Kind::Login,
            status,
            code,
            sent_us,
            latency_us: sent.elapsed().as_micros() as u64,
        });
        status
    }

    /// A GET, recorded in `ledger`.
    pub async fn get(&self, target: usize, path: &str, kind: Kind, ledger: &mut Ledger) -> u16 {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .send_routed(target, ledger, |base| {
                self.client.get(format!("{base}{path}"))
            })
            .await;
        let (status, code) = match result {
            Err(Lost::Unreachable) => return 0,
            Ok((r, _)) => {
                let status = r.status().as_u16();
                let code = if status >= 400 {
                    r.json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
                } else {
                    // Read the body so the timing covers the whole answer.
                    let _ = r.bytes().await;
                    None
                };
                (status, code)
            }
            Err(Lost::Cut) => (0, None),
        };
        ledger.samples.push(Sample {
            kind,
            status,
            code,
            sent_us,
            latency_us: sent.elapsed().as_micros() as u64,
        });
        status
    }
}

/// Whether an answer is one the API documents for this kind of request.
pub fn is_documented(kind: Kind, status: u16, code: Option<&str>) -> bool {
    match kind {
        Kind::Purchase | Kind::PurchaseOther => matches!(
            (status, code),
            (201, None)
                | (
                    409,
                    Some(
                        "sale_not_started"
                            | "sale_ended"
                            | "sale_cancelled"
                            | "sold_out"
                            | "already_purchased"
                    )
                )
                | (422, Some("quantity_exceeds_limit" | "validation_failed"))
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
                | (404, Some("not_found"))
                | (401, Some("unauthorized" | "token_revoked"))
                | (
                    403,
                    Some("forbidden" | "not_admitted" | "email_not_verified")
                )
        ),
        Kind::Join => matches!(
            (status, code),
            (200 | 201, None)
                | (
                    409,
                    Some("no_waiting_room" | "sale_ended" | "sale_cancelled")
                )
                | (404, Some("not_found"))
                | (401, Some("unauthorized" | "token_revoked"))
                | (503, Some("busy"))
        ),
        Kind::Ticket => matches!(
            (status, code),
            (200, None)
                | (404, Some("not_found"))
                | (401, Some("unauthorized" | "token_revoked"))
                | (503, Some("busy"))
        ),
        Kind::Login => matches!(
            (status, code),
            (200, None)
                | (401, Some("invalid_credentials"))
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
        ),
        Kind::Pay => matches!(
            (status, code),
            (200 | 201, None)
                | (
                    409,
                    Some("order_not_payable" | "hold_expired" | "request_in_progress")
                )
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
        ),
        Kind::Decide => matches!(
            (status, code),
            (200, None) | (409, Some("payment_not_open")) | (503, Some("busy"))
        ),
        Kind::Cart => matches!(
            (status, code),
            (200, None)
                | (404, Some("not_found"))
                | (422, Some("validation_failed"))
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
        ),
        Kind::Checkout => matches!(
            (status, code),
            (201, None)
                | (
                    409,
                    Some("out_of_stock" | "cart_empty" | "request_in_progress")
                )
                | (422, Some("validation_failed" | "idempotency_key_reused"))
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
        ),
        Kind::Status | Kind::Browse | Kind::Health => matches!(
            (status, code),
            (200, None)
                | (404, Some("not_found"))
                | (429, Some("rate_limited"))
                | (503, Some("busy"))
        ),
    }
}
