//! The built-in payment provider (`PAYMENT_PROVIDER=test`): a simulated card
//! processor that behaves like a real one towards the shop. It keeps its own
//! charges (`test_provider_charge`), has a hosted page of its own
//! (`/pay/{payment_id}`) that takes Stripe's test card numbers, and reports
//! every outcome only by a signed webhook, queued in the outbox in the same
//! transaction that decides the charge (so it is delivered at least once).
//! Closing its page decides nothing: the hold runs out. For machines (tests,
//! the harness) a charge can also be decided directly.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{Charge, Opened, Provider, ProviderError};
use crate::db::Db;
use crate::email::outbox::WEBHOOK_KIND;
use crate::error::ApiError;

/// The simulated processor.
pub struct TestProvider {
    pool: Db,
    /// Base of the hosted page's address.
    public_url: String,
}

/// How a charge ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeed,
    Fail,
}

/// Stripe's test card numbers: `4242 4242 4242 4242` succeeds; `4000 0000
/// 0000 0002` (declined) and `4000 0000 0000 9995` (insufficient funds) are
/// declined. Spaces and dashes are ignored; any other number is not a test
/// card (`None`).
pub fn card_outcome(number: &str) -> Option<Outcome> {
    let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    match digits.as_str() {
        "4242424242424242" => Some(Outcome::Succeed),
        "4000000000000002" | "4000000000009995" => Some(Outcome::Fail),
        _ => None,
    }
}

/// A charge as the provider's page and machine routes show it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TestCharge {
    pub payment_id: Uuid,
    pub order_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    /// `open`, `succeeded`, `failed` or `refunded`.
    pub status: String,
    /// The last four digits of the card it was paid (or declined) with.
    pub card_last4: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "payment_id, order_id, amount_cents, currency, status, card_last4, created_at,
     decided_at, refunded_at";

impl TestProvider {
    pub fn new(pool: Db, public_url: String) -> Self {
        TestProvider { pool, public_url }
    }

    /// One charge, if it exists.
    pub async fn charge(&self, payment_id: Uuid) -> Result<TestCharge, ApiError> {
        sqlx::query_as(&format!(
            "select {COLUMNS} from test_provider_charge where payment_id = $1"
        ))
        .bind(payment_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ApiError::NotFound("no such payment"))
    }

    /// Decides an open charge and queues the webhook that tells the shop, in
    /// one transaction. A charge already decided is `payment_not_open`.
    pub async fn decide(
        &self,
        payment_id: Uuid,
        outcome: Outcome,
        card_last4: Option<&str>,
    ) -> Result<TestCharge, ApiError> {
        let mut tx = self.pool.begin().await?;
        let charge: Option<TestCharge> = sqlx::query_as(&format!(
            "update test_provider_charge
                set status = $2, decided_at = now(), card_last4 = $3
              where payment_id = $1 and status = 'open'
          returning {COLUMNS}"
        ))
        .bind(payment_id)
        .bind(match outcome {
            Outcome::Succeed => "succeeded",
            Outcome::Fail => "failed",
        })
        .bind(card_last4)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(charge) = charge else {
            let known = self.charge(payment_id).await?;
            return Err(ApiError::PaymentNotOpen(format!(
                "this payment is {} already",
                known.status
            )));
        };
        let event = json!({
            "id": format!("evt_{}", Uuid::new_v4().simple()),
            "type": match outcome {
                Outcome::Succeed => "payment.succeeded",
                Outcome::Fail => "payment.failed",
            },
            "created": Utc::now().timestamp(),
            "data": {
                "payment_id": charge.payment_id,
                "order_id": charge.order_id,
                "amount_cents": charge.amount_cents,
                "currency": charge.currency,
            },
        });
        sqlx::query(
            "insert into outbox (kind, user_id, order_id, payload)
             select $1, user_id, id, $3 from purchase_order where id = $2",
        )
        .bind(WEBHOOK_KIND)
        .bind(charge.order_id)
        .bind(&event)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(charge)
    }
}

impl Provider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    fn open<'a>(&'a self, charge: &'a Charge) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        Box::pin(async move {
            sqlx::query(
                "insert into test_provider_charge (payment_id, order_id, amount_cents, currency)
                 values ($1, $2, $3, $4)",
            )
            .bind(charge.payment_id)
            .bind(charge.order_id)
            .bind(charge.amount_cents)
            .bind(&charge.currency)
            .execute(&self.pool)
            .await
            .map_err(|e| ProviderError(e.to_string()))?;
            Ok(Opened {
                provider_ref: charge.payment_id.to_string(),
                redirect_url: format!("{}/pay/{}", self.public_url, charge.payment_id),
            })
        })
    }

    fn refund<'a>(&'a self, provider_ref: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let id: Uuid = provider_ref
                .parse()
                .map_err(|_| ProviderError(format!("no such charge {provider_ref}")))?;
            // Refunding a refunded charge again changes nothing (a retry).
            let done = sqlx::query(
                "update test_provider_charge
                    set status = 'refunded', refunded_at = coalesce(refunded_at, now())
                  where payment_id = $1 and status in ('succeeded', 'refunded')",
            )
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| ProviderError(e.to_string()))?;
            if done.rows_affected() == 0 {
                return Err(ProviderError(format!(
                    "charge {provider_ref} has not succeeded"
                )));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_test_cards_decide_and_other_numbers_are_refused() {
        assert_eq!(card_outcome("4242 4242 4242 4242"), Some(Outcome::Succeed));
        assert_eq!(card_outcome("4242-4242-4242-4242"), Some(Outcome::Succeed));
        assert_eq!(card_outcome("4000 0000 0000 0002"), Some(Outcome::Fail));
        assert_eq!(card_outcome("4000000000009995"), Some(Outcome::Fail));
        assert_eq!(card_outcome("4242 4242 4242 4241"), None);
        assert_eq!(card_outcome(""), None);
    }
}
