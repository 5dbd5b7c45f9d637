//! Paying for a hold: open the order's payment, then have the test provider
//! decide it, the way a shopper's card would. Both retry `busy` and cut
//! requests: opening a payment again returns the open one, and a charge
//! decided by a cut request answers `payment_not_open` to the retry.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::purchase::Lost;
use super::{Kind, Ledger, Load, Sample};
use crate::provision::Buyer;

/// Tries per request before giving up.
const TRIES: usize = 10;

impl Load {
    /// Opens the payment of `order_id` as `buyer`; its id, or `None` when the
    /// shop refused (the hold ran out) or never answered.
    pub async fn pay(
        &self,
        target: usize,
        buyer: &Buyer,
        order_id: i64,
        ledger: &mut Ledger,
    ) -> Option<String> {
        let path = format!("/api/v1/orders/{order_id}/pay");
        for _ in 0..TRIES {
            let (status, body) = self
                .post_recorded(Kind::Pay, target, &path, Some(&buyer.token), ledger)
                .await;
            match status {
                200 | 201 => return body?["id"].as_str().map(str::to_string),
                0 | 429 | 503 => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => return None,
            }
        }
        None
    }

    /// The test provider decides `payment`: it succeeds or (`succeed` false)
    /// is declined. `true` once the provider has decided it as asked.
    pub async fn decide(
        &self,
        target: usize,
        payment: &str,
        succeed: bool,
        ledger: &mut Ledger,
    ) -> bool {
        let how = if succeed { "succeed" } else { "fail" };
        let path = format!("/api/v1/test-provider/payments/{payment}/{how}");
        let mut cut = false;
        for _ in 0..TRIES {
            let (status, _) = self
                .post_recorded(Kind::Decide, target, &path, None, ledger)
                .await;
            match status {
                200 => return true,
                // A cut request that got through decided it already.
                409 if cut => return true,
                0 => {
                    cut = true;
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                503 => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => return false,
            }
        }
        false
    }

    /// A POST with an empty JSON body, recorded as `kind`: the status (0: no
    /// answer) and the body.
    async fn post_recorded(
        &self,
        kind: Kind,
        target: usize,
        path: &str,
        token: Option<&str>,
        ledger: &mut Ledger,
    ) -> (u16, Option<Value>) {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .send_routed(target, ledger, |base| {
                let req = self
                    .client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json")
                    .body("{}");
                match token {
                    Some(t) => req.bearer_auth(t),
                    None => req,
                }
            })
            .await;
        let (status, body) = match result {
            Ok((r, _)) => {
                let status = r.status().as_u16();
                match r.json::<Value>().await {
                    Ok(v) => (status, Some(v)),
                    Err(_) => (0, None),
                }
            }
            Err(Lost::Cut | Lost::Unreachable) => (0, None),
        };
        let code = body
            .as_ref()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        ledger.samples.push(Sample {
            kind,
            status,
            code: code.clone(),
            sent_us,
            latency_us: sent.elapsed().as_micros() as u64,
        });
        (status, body)
    }
}
