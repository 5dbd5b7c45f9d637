//! Firing requests from a fixed number of connections and recording every
//! answer: its kind, status, error code, when it was sent and how long it took.
//!
//! This file is the recording side: the HTTP client with one method per kind
//! of request, and the ledger it writes. The workers that share the
//! connections out are in `workers`.

mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::provision::Buyer;

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
        }
    }
}

/// One request and its answer. `status` 0 means no answer (timeout or lost
/// connection).
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
}

/// Everything one run recorded.
#[derive(Default, Debug)]
pub struct Ledger {
    pub samples: Vec<Sample>,
    pub successes: Vec<Success>,
    /// Purchases whose outcome is unknown: (sale, user).
    pub unknown: Vec<(i64, i64)>,
}

impl Ledger {
    pub fn merge(&mut self, other: Ledger) {
        self.samples.extend(other.samples);
        self.successes.extend(other.successes);
        self.unknown.extend(other.unknown);
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
        })
    }

    /// Restarts the run clock (call right before firing).
    pub fn reset_clock(&mut self) {
        self.start = Instant::now();
    }

    /// Time since the run clock started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn target(&self, i: usize) -> &str {
        &self.targets[i % self.targets.len()]
    }

    /// One purchase attempt, recorded in `ledger`.
    pub async fn purchase(
        &self,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> Attempt {
        self.purchase_as(Kind::Purchase, target, buyer, sale_id, ledger)
            .await
    }

    /// One purchase attempt recorded as `kind`.
    pub async fn purchase_as(
        &self,
        kind: Kind,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> Attempt {
        let url = format!("{}/api/v1/sales/{sale_id}/purchase", self.target(target));
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .client
            .post(url)
            .bearer_auth(&buyer.token)
            .header("content-type", "application/json")
            .body("{\"quantity\":1}")
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(_) => {
                ledger.samples.push(Sample {
                    kind,
                    status: 0,
                    code: None,
                    sent_us,
                    latency_us: sent.elapsed().as_micros() as u64,
                });
                ledger.unknown.push((sale_id, buyer.id));
                return Attempt::Unknown;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Option<Value> = resp.json().await.ok();
        let latency_us = sent.elapsed().as_micros() as u64;
        let Some(body) = body else {
            // The status arrived but the body did not: the outcome is unknown.
            ledger.samples.push(Sample {
                kind,
                status: 0,
                code: None,
                sent_us,
                latency_us,
            });
            ledger.unknown.push((sale_id, buyer.id));
            return Attempt::Unknown;
        };
        let code = body["error"]["code"].as_str().map(str::to_string);
        ledger.samples.push(Sample {
            kind,
            status,
            code: code.clone(),
            sent_us,
            latency_us,
        });
        match (status, code.as_deref()) {
            (201, _) => match body["id"].as_i64() {
                Some(order_id) => {
                    ledger.successes.push(Success {
                        sale_id,
                        user_id: buyer.id,
                        order_id,
                        done_us: sent_us + latency_us,
                    });
                    Attempt::Created
                }
                None => Attempt::Broken,
            },
            (409, Some("sale_not_started")) => Attempt::Retry(Duration::from_millis(5)),
            (429, Some("rate_limited")) | (503, Some("busy")) => Attempt::Retry(
                Duration::from_millis(retry_after.unwrap_or(1).clamp(1, 5) * 1000),
            ),
            (s, Some(c)) if is_documented(kind, s, Some(c)) => Attempt::Refused(c.to_string()),
            _ => Attempt::Broken,
        }
    }

    /// Retries a purchase until it is final (at most `max_attempts` tries);
    /// returns the last attempt.
    pub async fn purchase_until_final(
        &self,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        max_attempts: usize,
        ledger: &mut Ledger,
    ) -> Attempt {
        self.purchase_until_final_as(Kind::Purchase, target, buyer, sale_id, max_attempts, ledger)
            .await
    }

    /// [`Load::purchase_until_final`], recorded as `kind`.
    pub async fn purchase_until_final_as(
        &self,
        kind: Kind,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        max_attempts: usize,
        ledger: &mut Ledger,
    ) -> Attempt {
        let mut last = Attempt::Broken;
        for _ in 0..max_attempts.max(1) {
            last = self.purchase_as(kind, target, buyer, sale_id, ledger).await;
            match &last {
                Attempt::Retry(wait) => tokio::time::sleep(*wait).await,
                _ => return last,
            }
        }
        last
    }

    /// A login with a username and password, recorded in `ledger`.
    pub async fn login(
        &self,
        target: usize,
        username: &str,
        password: &str,
        ledger: &mut Ledger,
    ) -> u16 {
        let url = format!("{}/api/v1/auth/login", self.target(target));
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .client
            .post(url)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await;
        let (status, code) = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let v: Option<Value> = r.json().await.ok();
                (
                    status,
                    v.and_then(|v| v["error"]["code"].as_str().map(str::to_string)),
                )
            }
            Err(_) => (0, None),
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
        let url = format!("{}{path}", self.target(target));
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let (status, code) = match self.client.get(url).send().await {
            Ok(r) => {
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
            Err(_) => (0, None),
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
                | (403, Some("forbidden"))
        ),
        Kind::Login => matches!(
            (status, code),
            (200, None)
                | (401, Some("invalid_credentials"))
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
