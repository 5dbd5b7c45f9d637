//! The purchase engine: the one place where stock turns into orders.
//!
//! Every purchase is one READ COMMITTED transaction:
//!
//! 1. `SELECT ... FOR UPDATE` on the sale row, which holds `remaining`;
//! 2. the window is checked against the database clock (`now()`, the
//!    transaction's start), and the sale must not be cancelled;
//! 3. the buyer must not already have an order in this sale (checked here, and
//!    backed by the `purchase_order_sale_id_user_id_key` unique constraint);
//! 4. the quantity must not exceed the sale's per-user limit;
//! 5. the quantity must not exceed `remaining`;
//! 6. the order is inserted, `remaining` decremented and the product's
//!    `sell_count` incremented, locking sale then product, always in that order;
//! 7. commit. Nothing slow runs while the lock is held.
//!
//! The transaction runs on its own task, so a client that hangs up mid-request
//! cannot cut it short: it commits or rolls back as a whole.

use sqlx::PgPool;

use crate::domain::Quantity;
use crate::error::ApiError;
use crate::orders::{Order, COLUMNS};

/// How purchases reach the database. One transaction per purchase today; the
/// engine is the seam where other strategies plug in.
#[derive(Clone)]
pub struct PurchaseEngine {
    pool: PgPool,
}

/// A purchase request that passed input validation.
#[derive(Clone, Copy, Debug)]
pub struct PurchaseRequest {
    pub sale_id: i64,
    pub user_id: i64,
    pub quantity: Quantity,
}

impl PurchaseEngine {
    /// An engine on `pool`.
    pub fn new(pool: PgPool) -> Self {
        PurchaseEngine { pool }
    }

    /// Runs one purchase to completion, even if the caller stops waiting.
    /// `Ok` means the order is committed.
    pub async fn purchase(&self, req: PurchaseRequest) -> Result<Order, ApiError> {
        let pool = self.pool.clone();
        let span = tracing::info_span!("purchase", sale_id = req.sale_id, user_id = req.user_id);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move { purchase_in_transaction(&pool, req).await },
            span,
        ));
        task.await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("purchase task failed: {e}")))?
    }
}

#[derive(sqlx::FromRow)]
struct LockedSale {
    product_id: i64,
    remaining: i64,
    price_cents: i64,
    per_user_limit: i32,
    cancelled: bool,
    not_started: bool,
    ended: bool,
}

async fn purchase_in_transaction(pool: &PgPool, req: PurchaseRequest) -> Result<Order, ApiError> {
    let qty = req.quantity.get();
    let mut tx = pool.begin().await?;
    let sale: LockedSale = sqlx::query_as(
        "select product_id, remaining, price_cents, per_user_limit,
                cancelled_at is not null as cancelled,
                now() < starts_at as not_started,
                now() >= ends_at as ended
           from sale where id = $1 for update",
    )
    .bind(req.sale_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("no such sale"))?;

    if sale.cancelled {
        return Err(ApiError::SaleCancelled);
    }
    if sale.not_started {
        return Err(ApiError::SaleNotStarted);
    }
    if sale.ended {
        return Err(ApiError::SaleEnded);
    }
    let already: bool = sqlx::query_scalar(
        "select exists (select 1 from purchase_order where sale_id = $1 and user_id = $2)",
    )
    .bind(req.sale_id)
    .bind(req.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if already {
        return Err(ApiError::AlreadyPurchased);
    }
    if qty > sale.per_user_limit {
        return Err(ApiError::QuantityExceedsLimit(sale.per_user_limit));
    }
    if sale.remaining == 0 {
        return Err(ApiError::SoldOut("sold out".into()));
    }
    if i64::from(qty) > sale.remaining {
        return Err(ApiError::SoldOut(format!("only {} left", sale.remaining)));
    }

    let total = sale.price_cents * i64::from(qty);
    let order: Order = sqlx::query_as(&format!(
        "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents)
         values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
    ))
    .bind(req.sale_id)
    .bind(sale.product_id)
    .bind(req.user_id)
    .bind(qty)
    .bind(sale.price_cents)
    .bind(total)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("update sale set remaining = remaining - $2 where id = $1")
        .bind(req.sale_id)
        .bind(i64::from(qty))
        .execute(&mut *tx)
        .await?;
    sqlx::query("update product set sell_count = sell_count + $2 where id = $1")
        .bind(sale.product_id)
        .bind(i64::from(qty))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(order)
}
