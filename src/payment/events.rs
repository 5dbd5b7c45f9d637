//! The provider's webhooks: verified, handled once per event id, settled.
//!
//! - `payment.succeeded` while the order still holds its unit: the order is
//!   paid (its row is locked, not the sale's).
//! - `payment.succeeded` after the hold was released (a late payment): under
//!   the sale's lock, the units are taken again if they are there, the sale
//!   is not cancelled, the order expired or failed (not an admin's cancel)
//!   and the buyer holds no other live order in the sale; a catalog order's,
//!   under its products' locks, if every line's units are in stock.
//!   Otherwise the order ends `refunded` and the refund worker gives the
//!   money back. Every succeeded payment ends as exactly one paid or
//!   refunded order.
//! - `payment.failed`: the payment fails, and the order's units are released
//!   through the purchase engine (batched with the sale's other work); if
//!   the process stops in between, the sweeper releases it.
//!
//! A replayed event (same id) answers as before and changes nothing; so does
//! a second success or failure of a payment already settled.

use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::{signature, Payments};
use crate::db::catalog;
use crate::db::orders::Release;
use crate::db::payments::{self, Settling};
use crate::error::ApiError;

/// A webhook event, as providers send it.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub payment_id: Uuid,
    pub order_id: i64,
    pub amount_cents: i64,
    pub currency: String,
}

/// What handling an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Applied now (or found already true of the payment).
    Applied,
    /// This event id was handled before.
    Replayed,
    /// A type this shop does not act on.
    Ignored,
}

impl Handled {
    pub fn as_str(self) -> &'static str {
        match self {
            Handled::Applied => "applied",
            Handled::Replayed => "replayed",
            Handled::Ignored => "ignored",
        }
    }
}

impl Payments {
    /// Handles one webhook delivery: `signature` is the `Flashsale-Signature`
    /// header, `body` the raw body it signs. A bad, missing or stale
    /// signature is `invalid_signature`, and nothing is written.
    pub async fn webhook(
        &self,
        signature: Option<&[u8]>,
        body: &[u8],
    ) -> Result<Handled, ApiError> {
        signature::verify(self.secret(), signature, body, Utc::now().timestamp())
            .map_err(|e| ApiError::InvalidSignature(e.to_string()))?;
        let event: Event = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the event is not readable: {e}")))?;
        if event.id.is_empty() || event.id.len() > 255 {
            return Err(ApiError::BadRequest(
                "the event id must be 1 to 255 bytes".into(),
            ));
        }
        match event.kind.as_str() {
            "payment.succeeded" => self.succeeded(&event).await,
            "payment.failed" => self.failed(&event).await,
            // Providers send many kinds of event; the others change nothing.
            _ => Ok(Handled::Ignored),
        }
    }

    async fn succeeded(&self, e: &Event) -> Result<Handled, ApiError> {
        let id = e.data.payment_id;
        // The usual case: the order still holds its unit, and only its row
        // (and the payment's) is locked.
        let mut tx = self.pool.begin().await?;
        if !payments::record_event(&mut tx, &e.id, id, &e.kind).await? {
            return Ok(Handled::Replayed);
        }
        let s = locked(&mut tx, e).await?;
        if settled_success(&s.payment_status) {
            tx.commit().await?;
            return Ok(Handled::Applied);
        }
        if s.order_status == "pending_payment" {
            payments::pay_held(&mut tx, id, &s).await?;
            tx.commit().await?;
            return Ok(Handled::Applied);
        }
        // Late: the units went back. Start over with the sale's lock first,
        // so the lock order stays sale, order, payment.
        tx.rollback().await?;

        let mut tx = self.pool.begin().await?;
        if !payments::record_event(&mut tx, &e.id, id, &e.kind).await? {
            return Ok(Handled::Replayed);
        }
        let (order_id, sale_id) = payments::sale_of(&mut tx, id)
            .await?
            .ok_or(ApiError::NotFound("no such payment"))?;
        // A sale order's units come from its sale (locked first); a catalog
        // order's from its products' stock (locked first, in id order).
        let units = match sale_id {
            Some(sale_id) => {
                let (remaining, cancelled) = payments::lock_sale(&mut tx, sale_id)
                    .await?
                    .ok_or(ApiError::NotFound("no such sale"))?;
                Units::Sale {
                    remaining,
                    cancelled,
                }
            }
            None => Units::Catalog {
                in_stock: catalog::lock_for_retake(&mut tx, order_id).await?,
            },
        };
        let s = locked(&mut tx, e).await?;
        let released = matches!(s.order_status.as_str(), "expired" | "payment_failed");
        if settled_success(&s.payment_status) {
            // Recorded meanwhile under another event id: nothing changes.
        } else if s.order_status == "pending_payment" {
            payments::pay_held(&mut tx, id, &s).await?;
        } else if !released {
            // An admin's cancel: the money goes back.
            payments::refund_late(&mut tx, id, &s).await?;
            tracing::info!(order_id, "a late payment is refunded");
        } else {
            match units {
                Units::Sale {
                    remaining,
                    cancelled,
                } if !cancelled
                    && remaining >= i64::from(s.quantity)
                    && !payments::holds_another(&mut tx, &s).await? =>
                {
                    payments::retake(&mut tx, id, &s).await?;
                    tracing::info!(order_id, "a late payment took its units again");
                }
                Units::Catalog { in_stock: true } => {
                    catalog::retake(&mut tx, id, &s).await?;
                    tracing::info!(order_id, "a late payment took its units again");
                }
                _ => {
                    payments::refund_late(&mut tx, id, &s).await?;
                    tracing::info!(order_id, "a late payment is refunded");
                }
            }
        }
        tx.commit().await?;
        Ok(Handled::Applied)
    }

    async fn failed(&self, e: &Event) -> Result<Handled, ApiError> {
        let id = e.data.payment_id;
        let mut tx = self.pool.begin().await?;
        if !payments::record_event(&mut tx, &e.id, id, &e.kind).await? {
            return Ok(Handled::Replayed);
        }
        let s = locked(&mut tx, e).await?;
        // A payment that succeeded stays succeeded: the money is there.
        let failing = s.payment_status == "open";
        if failing {
            payments::fail(&mut tx, id).await?;
        }
        tx.commit().await?;
        if s.order_status == "pending_payment" && (failing || s.payment_status == "failed") {
            // Rides in the sale's next batch, on a task of its own, so the
            // provider is answered at once. If it cannot happen now, the
            // sweeper finds the failed payment's pending order and releases it.
            let engine = self.engine.clone();
            let (sale_id, order_id) = (s.sale_id, s.order_id);
            tokio::spawn(async move {
                if let Err(err) = engine
                    .release_order(sale_id, order_id, Release::PaymentFailed)
                    .await
                {
                    tracing::warn!(order_id, error = %err, "releasing a failed payment's order failed; the sweeper retries");
                }
            });
        }
        Ok(Handled::Applied)
    }
}

/// Where a late payment's units would come from, as found under their lock.
enum Units {
    /// A sale order's: the sale's stock and whether it is cancelled.
    Sale { remaining: i64, cancelled: bool },
    /// A catalog order's: whether every line is in stock.
    Catalog { in_stock: bool },
}

/// Locks the event's payment and order, and checks that the event describes
/// them (a signed event about another order or amount is refused).
async fn locked(conn: &mut sqlx::PgConnection, e: &Event) -> Result<Settling, ApiError> {
    let s = payments::lock(conn, e.data.payment_id)
        .await?
        .ok_or(ApiError::NotFound("no such payment"))?;
    if s.order_id != e.data.order_id
        || s.amount_cents != e.data.amount_cents
        || s.currency != e.data.currency
    {
        return Err(ApiError::BadRequest(
            "the event's order, amount or currency differ from the payment's".into(),
        ));
    }
    Ok(s)
}

/// The payment's success is already recorded.
fn settled_success(status: &str) -> bool {
    matches!(status, "succeeded" | "refunding" | "refunded")
}
