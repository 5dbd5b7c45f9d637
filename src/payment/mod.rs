//! Payment: a shopper pays for a hold through a provider, and the provider's
//! signed webhooks settle the order.
//!
//! - [`Payments::pay`] opens a payment for a `pending_payment` order: the
//!   provider opens a charge (outside every lock), then the payment is
//!   recorded under the order's row lock. Asking again returns the open one.
//! - The provider reports the outcome by webhook ([`events`]): success pays
//!   the order, failure releases its units through the purchase engine, a
//!   success after the hold was released takes the units again or refunds.
//! - Refunds are asked of the provider by the refund worker ([`refunds`]),
//!   outside every lock, and retried until the provider confirms.
//!
//! Providers sit behind [`Provider`]; the built-in one is the simulated card
//! processor of [`test_provider`], whose webhooks ride in the outbox
//! ([`webhooks`]).

pub mod events;
pub mod refunds;
pub mod signature;
pub mod test_provider;
pub mod webhooks;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretSlice};
use uuid::Uuid;

use crate::db::payments::{self, NewPayment, Payment};
use crate::db::Db;
use crate::error::ApiError;
use crate::purchase::PurchaseEngine;

/// A charge a provider is asked to open.
#[derive(Clone, Debug)]
pub struct Charge {
    pub payment_id: Uuid,
    pub order_id: i64,
    pub amount_cents: i64,
    pub currency: String,
}

/// A charge the provider opened.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The provider's id of the charge.
    pub provider_ref: String,
    /// The page where the shopper pays.
    pub redirect_url: String,
}

/// A provider could not do what it was asked; the caller may try again.
#[derive(Debug, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct ProviderError(pub String);

/// A payment processor. A real one is one module implementing this; the
/// outcome of a charge comes back by webhook, never as a return value.
/// Nothing calls a provider while holding a row lock.
pub trait Provider: Send + Sync {
    /// The name payments record (`payment.provider`).
    fn name(&self) -> &'static str;
    /// Opens a charge the shopper can pay on the returned page.
    fn open<'a>(&'a self, charge: &'a Charge) -> BoxFuture<'a, Result<Opened, ProviderError>>;
    /// Gives a succeeded charge's money back. Asked again for the same charge
    /// (a retry), it must not refund twice.
    fn refund<'a>(&'a self, provider_ref: &'a str) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// The payment service of one process.
pub struct Payments {
    pool: Db,
    provider: Arc<dyn Provider>,
    webhook_secret: SecretSlice<u8>,
    engine: PurchaseEngine,
}

/// The answer to [`Payments::pay`].
pub enum Paying {
    /// A payment opened by this request.
    Opened(Payment),
    /// The order's open payment, opened before.
    Existing(Payment),
}

impl Payments {
    pub fn new(
        pool: Db,
        provider: Arc<dyn Provider>,
        webhook_secret: &[u8],
        engine: PurchaseEngine,
    ) -> Self {
        Payments {
            pool,
            provider,
            webhook_secret: SecretSlice::from(webhook_secret.to_vec()),
            engine,
        }
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The key webhooks are signed with.
    pub fn webhook_secret(&self) -> &[u8] {
        self.secret()
    }

    fn secret(&self) -> &[u8] {
        self.webhook_secret.expose_secret()
    }

    /// Opens a payment for `user_id`'s order `order_id`, or returns the one
    /// that is open. An order that is not pending is `order_not_payable`; one
    /// whose hold has run out (released or not yet) is `hold_expired`.
    pub async fn pay(&self, user_id: i64, order_id: i64) -> Result<Paying, ApiError> {
        // One transaction for both looks (one server, behind a pooler too).
        let mut conn = self.pool.begin().await?;
        // A first look without a lock: most repeats and refusals end here,
        // before the provider is asked for anything.
        let order = payments::payable(&mut conn, order_id, user_id, false)
            .await?
            .ok_or(ApiError::NotFound("no such order"))?;
        if let Some(p) = payments::current_of(&mut conn, order_id).await? {
            if p.status == "open" {
                return Ok(Paying::Existing(p));
            }
        }
        payable_or_refuse(&order)?;
        drop(conn);

        // The provider opens its charge outside every lock.
        let charge = Charge {
            payment_id: Uuid::new_v4(),
            order_id,
            amount_cents: order.total_cents,
            currency: order.currency.clone(),
        };
        let opened = self.provider.open(&charge).await.map_err(|e| {
            tracing::warn!(order_id, error = %e, "the payment provider cannot open a charge");
            ApiError::Busy(2)
        })?;

        // Recorded under the order's lock, after checking again: the hold
        // may have run out, or another request opened a payment meanwhile
        // (then the charge opened here is never used).
        let mut tx = self.pool.begin().await?;
        let order = payments::payable(&mut tx, order_id, user_id, true)
            .await?
            .ok_or(ApiError::NotFound("no such order"))?;
        if let Some(p) = payments::current_of(&mut tx, order_id).await? {
            return match p.status.as_str() {
                "open" => Ok(Paying::Existing(p)),
                _ => Err(not_payable(&order.status)),
            };
        }
        payable_or_refuse(&order)?;
        let payment = payments::insert(
            &mut tx,
            &NewPayment {
                id: charge.payment_id,
                order_id,
                provider: self.provider.name(),
                provider_ref: &opened.provider_ref,
                amount_cents: charge.amount_cents,
                currency: &charge.currency,
                redirect_url: &opened.redirect_url,
            },
        )
        .await?
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "an order's payment appeared under its lock"
            ))
        })?;
        tx.commit().await?;
        Ok(Paying::Opened(payment))
    }
}

fn payable_or_refuse(order: &payments::Payable) -> Result<(), ApiError> {
    if order.status != "pending_payment" {
        return Err(not_payable(&order.status));
    }
    if order.overdue {
        return Err(ApiError::HoldExpired);
    }
    Ok(())
}

fn not_payable(status: &str) -> ApiError {
    match status {
        "expired" => ApiError::HoldExpired,
        other => ApiError::OrderNotPayable(format!(
            "the order is {other}; only orders pending payment can be paid"
        )),
    }
}
