//! Purchases, and the routing every request of a run goes through.
//!
//! **Routing around a dead instance.** A request goes to its worker's
//! instance first. When the connection is refused (or never established),
//! nothing was sent, so no order can have come of it: the request goes to
//! the next instance, as a load balancer would, and the refusal is counted.
//! A request that was sent and then cut (a reset, a timeout, a body that
//! never came) is not sent again: it may have made an order, so it is an
//! unknown outcome. [`never_sent`] is the one place that tells the two apart.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{is_documented, Attempt, Kind, Ledger, Load, Sample, Success};
use crate::provision::Buyer;

/// Whether a failed request certainly never reached a server: the connection
/// itself failed, so not a byte of the request was written. Only these are
/// safe to send elsewhere.
pub fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// A request that got no answer.
pub(crate) enum Lost {
    /// Sent (or possibly sent), then cut: its outcome is unknown.
    Cut,
    /// Every instance refused the connection: it was sent nowhere.
    Unreachable,
}

impl Load {
    /// Sends the request `build` makes for an instance's base URL, starting
    /// with instance `first` and moving on to the next one only while
    /// connections are refused. Returns the answer and the instance that
    /// gave it.
    pub(crate) async fn send_routed(
        &self,
        first: usize,
        ledger: &mut Ledger,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, usize), Lost> {
        let n = self.targets.len();
        for k in 0..n {
            let i = (first + k) % n;
            match build(&self.targets[i]).send().await {
                Ok(r) => return Ok((r, i)),
                Err(e) if never_sent(&e) => ledger.refused += 1,
                Err(_) => return Err(Lost::Cut),
            }
        }
        ledger.unreachable += 1;
        Err(Lost::Unreachable)
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

    /// One purchase attempt recorded as `kind`. Its latency runs from the
    /// first connection tried, refused ones included.
    pub async fn purchase_as(
        &self,
        kind: Kind,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> Attempt {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .send_routed(target, ledger, |base| {
                self.client
                    .post(format!("{base}/api/v1/sales/{sale_id}/purchase"))
                    .bearer_auth(&buyer.token)
                    .header("content-type", "application/json")
                    .body("{\"quantity\":1}")
            })
            .await;
        let (resp, instance) = match result {
            Ok(r) => r,
            // Nothing was sent anywhere: no order, nothing to record but the
            // count; try again a little later.
            Err(Lost::Unreachable) => return Attempt::Retry(Duration::from_millis(100)),
            Err(Lost::Cut) => {
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
                        instance,
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
    ///
    /// When the database fails during a commit and stays unreachable while
    /// the engine asks it whether the commit happened, the engine answers
    /// `busy`, and the retry is told `already_purchased`: the buyer learns of
    /// the order then. Such a `busy` followed by `already_purchased` is noted
    /// in `told_late`, which may explain one order row of the buyer.
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
        let mut told_busy = false;
        for _ in 0..max_attempts.max(1) {
            let before = ledger.samples.len();
            last = self.purchase_as(kind, target, buyer, sale_id, ledger).await;
            let answered_busy = ledger.samples.len() > before
                && ledger
                    .samples
                    .last()
                    .is_some_and(|s| s.status == 503 && s.code.as_deref() == Some("busy"));
            told_busy |= answered_busy;
            match &last {
                Attempt::Retry(wait) => tokio::time::sleep(*wait).await,
                Attempt::Refused(code) if told_busy && code == "already_purchased" => {
                    ledger.told_late.push((sale_id, buyer.id));
                    return last;
                }
                _ => return last,
            }
        }
        last
    }
}
