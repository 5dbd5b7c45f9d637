//! A shopper's cart: setting and removing lines, and checking it out into one
//! catalog order. A checkout carries an `Idempotency-Key`, and a checkout
//! that got no final answer (cut, `busy`, `rate_limited`,
//! `request_in_progress`) is sent again with the same key: the shop answers
//! the retry with the first answer when there was one, so a cut request does
//! not leave an order nobody was told about.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::purchase::Lost;
use super::{Kind, Ledger, Load, Sample};
use crate::provision::Buyer;

/// Tries per checkout before its outcome is left unknown.
const TRIES: usize = 20;

/// A checkout answered 201: the order and the lines it holds.
#[derive(Clone, Debug)]
pub struct CheckoutSuccess {
    pub user_id: i64,
    pub order_id: i64,
    /// (product id, units), as the 201 listed them.
    pub lines: Vec<(i64, i64)>,
    /// Microseconds from the start of the load to the answer.
    pub done_us: u64,
}

/// A line the shop could not fill, as `out_of_stock` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortLine {
    pub product_id: i64,
    pub requested: i64,
    pub available: i64,
}

/// How a checkout ended.
#[derive(Debug)]
pub enum CheckoutEnd {
    /// 201: the order id.
    Created(i64),
    /// 409 `out_of_stock`, with the short lines; nothing was held.
    OutOfStock(Vec<ShortLine>),
    /// Any other final answer (its code, or the status when it had none).
    Refused(String),
    /// No final answer after every try: an order may or may not exist.
    Unknown,
}

impl Load {
    /// Sets `product_id`'s line of `buyer`'s cart to `quantity` (0 removes
    /// it); the status (0: no answer).
    pub async fn set_cart_line(
        &self,
        target: usize,
        buyer: &Buyer,
        product_id: i64,
        quantity: i64,
        ledger: &mut Ledger,
    ) -> u16 {
        let path = format!("/api/v1/cart/items/{product_id}");
        let (status, _) = self
            .send_cart(Kind::Cart, target, buyer, ledger, |base| {
                let url = format!("{base}{path}");
                if quantity == 0 {
                    self.client.delete(url)
                } else {
                    self.client
                        .put(url)
                        .header("content-type", "application/json")
                        .body(format!("{{\"quantity\":{quantity}}}"))
                }
            })
            .await;
        status
    }

    /// Checks out `buyer`'s cart with the Idempotency-Key `key`, sending it
    /// again with the same key until a final answer comes.
    pub async fn checkout_cart(
        &self,
        target: usize,
        buyer: &Buyer,
        key: &str,
        ledger: &mut Ledger,
    ) -> CheckoutEnd {
        for _ in 0..TRIES {
            let (status, body) = self
                .send_cart(Kind::Checkout, target, buyer, ledger, |base| {
                    self.client
                        .post(format!("{base}/api/v1/cart/checkout"))
                        .header("idempotency-key", key)
                        .header("content-type", "application/json")
                        .body("{}")
                })
                .await;
            let code = body
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str())
                .map(str::to_string);
            match (status, code.as_deref()) {
                (201, _) => {
                    let Some(v) = body else {
                        return CheckoutEnd::Unknown;
                    };
                    let Some(order_id) = v["id"].as_i64() else {
                        return CheckoutEnd::Refused("201 without an id".into());
                    };
                    let lines = v["lines"]
                        .as_array()
                        .map(|ls| {
                            ls.iter()
                                .map(|l| {
                                    (
                                        l["product_id"].as_i64().unwrap_or(-1),
                                        l["quantity"].as_i64().unwrap_or(-1),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    ledger.checkouts.push(CheckoutSuccess {
                        user_id: buyer.id,
                        order_id,
                        lines,
                        done_us: self.elapsed().as_micros() as u64,
                    });
                    return CheckoutEnd::Created(order_id);
                }
                (409, Some("out_of_stock")) => {
                    let short = body
                        .as_ref()
                        .and_then(|v| v["error"]["details"]["lines"].as_array().cloned())
                        .unwrap_or_default()
                        .iter()
                        .map(|l| ShortLine {
                            product_id: l["product_id"].as_i64().unwrap_or(-1),
                            requested: l["requested"].as_i64().unwrap_or(0),
                            available: l["available"].as_i64().unwrap_or(0),
                        })
                        .collect();
                    return CheckoutEnd::OutOfStock(short);
                }
                (0, _) | (429, Some("rate_limited")) | (503, Some("busy")) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                (409, Some("request_in_progress")) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                (s, c) => return CheckoutEnd::Refused(c.map_or(s.to_string(), str::to_string)),
            }
        }
        ledger.unknown_checkouts.push(buyer.id);
        CheckoutEnd::Unknown
    }

    /// Sends a cart request as `buyer`, recorded as `kind`: the status (0:
    /// no answer) and the body.
    async fn send_cart(
        &self,
        kind: Kind,
        target: usize,
        buyer: &Buyer,
        ledger: &mut Ledger,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> (u16, Option<Value>) {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .send_routed(target, ledger, |base| build(base).bearer_auth(&buyer.token))
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
        ledger.samples.push(Sample {
            kind,
            status,
            code: body
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_string)),
            sent_us,
            latency_us: sent.elapsed().as_micros() as u64,
        });
        (status, body)
    }
}
