//! One transaction per purchase: the baseline engine.

use super::rules::{decide, lock_sale, window_error, BuyerFacts, Decision};
use super::PurchaseRequest;
use crate::db::orders::{self, Order, Release, ReleasedOrder, Releasing, COLUMNS, LIVE};
use crate::db::Db;
use crate::error::ApiError;

/// Runs one purchase in its own transaction. Returns the order and the
/// remaining stock after it.
pub(super) async fn purchase(
    pool: &Db,
    req: PurchaseRequest,
    require_verified: bool,
) -> Result<(Order, i64), ApiError> {
    let qty = req.quantity.get();
    let mut tx = pool.begin().await?;
    let sale = lock_sale(&mut tx, req.sale_id).await?;
    if let Some(e) = window_error(&sale) {
        return Err(e);
    }
    // A waiting-room sale sells only on an admitted ticket that is neither
    // lapsed (by the database clock) nor used.
    let (exists, disabled, unverified, already, not_admitted): (bool, bool, bool, bool, bool) =
        sqlx::query_as(&format!(
            "select u.id is not null, coalesce(u.disabled_at is not null, false),
                $3 and coalesce(u.email_verified_at is null, false),
                exists (select 1 from purchase_order
                         where sale_id = $1 and user_id = $2 and status in {LIVE}),
                $4 and not exists (select 1 from queue_ticket t
                                    where t.sale_id = $1 and t.user_id = $2
                                      and t.admitted_until > now() and t.used_at is null)
           from (select $2::bigint as id) b left join app_user u on u.id = b.id"
        ))
        .bind(req.sale_id)
        .bind(req.user_id)
        .bind(require_verified || sale.verified_only)
        .bind(sale.waiting_room)
        .fetch_one(&mut *tx)
        .await?;
    let buyer = BuyerFacts {
        exists,
        disabled,
        unverified,
        already,
        not_admitted,
    };
    if let Decision::Refuse(e) = decide(buyer, qty, sale.per_user_limit, sale.remaining) {
        return Err(e);
    }

    let total = sale.price_cents * i64::from(qty);
    // With a hold the order waits for payment until `expires_at`, by the
    // database clock; without one it is confirmed at once.
    let order: Order = sqlx::query_as(&format!(
        "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents,
                                     total_cents, currency, status, expires_at)
         values ($1, $2, $3, $4, $5, $6, (select currency from product where id = $2),
                 case when $7 > 0 then 'pending_payment' else 'confirmed' end,
                 case when $7 > 0 then now() + make_interval(secs => $7) end)
         returning {COLUMNS}"
    ))
    .bind(req.sale_id)
    .bind(sale.product_id)
    .bind(req.user_id)
    .bind(qty)
    .bind(sale.price_cents)
    .bind(total)
    .bind(sale.hold_secs)
    .fetch_one(&mut *tx)
    .await?;
    let remaining: i64 = sqlx::query_scalar(
        "update sale set remaining = remaining - $2 where id = $1 returning remaining",
    )
    .bind(req.sale_id)
    .bind(i64::from(qty))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("update product set sell_count = sell_count + $2 where id = $1")
        .bind(sale.product_id)
        .bind(i64::from(qty))
        .execute(&mut *tx)
        .await?;
    // One ticket buys once. `used_at` is the clock when it is used, after the
    // admission check saw it admitted; the order's `created_at` is the
    // transaction's start, which may come before an admission that committed
    // while the transaction waited for the sale's lock.
    if sale.waiting_room {
        sqlx::query(
            "update queue_ticket set used_at = clock_timestamp(), order_id = $3
              where sale_id = $1 and user_id = $2",
        )
        .bind(req.sale_id)
        .bind(req.user_id)
        .bind(order.id)
        .execute(&mut *tx)
        .await?;
    }
    // The confirmation email commits with a confirmed order.
    if order.status == "confirmed" {
        sqlx::query(
            "insert into outbox (kind, user_id, order_id) values ('order_confirmation', $1, $2)",
        )
        .bind(req.user_id)
        .bind(order.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((order, remaining))
}

/// Releases orders of one sale in their own transaction under the sale's
/// lock. Returns what was released and the remaining stock after it.
pub(super) async fn release(
    pool: &Db,
    sale_id: i64,
    ids: &[i64],
    why: Release,
) -> Result<(Vec<ReleasedOrder>, Option<i64>), ApiError> {
    let mut tx = pool.begin().await?;
    lock_sale(&mut tx, sale_id).await?;
    let released = orders::release(&mut tx, sale_id, Releasing::Orders(ids), why).await?;
    tx.commit().await?;
    Ok(released)
}
