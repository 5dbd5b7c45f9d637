//! Catalog orders: a cart checked out against `product.stock`, several
//! lines at once, held until paid like a sale's order.
//!
//! Invariants (see `migrations/0007_cart.sql`): for each product, `stock` +
//! the units of its live catalog orders is what its seller put in, and
//! `sell_count` is the units of all its live orders. Every function here
//! that moves an order in or out of the live ones moves `stock` and
//! `sell_count` by its lines in the same statement, under the row locks of
//! its products, taken first and in id order ([`lock_products`]); so two
//! checkouts that share products wait for each other, never in a cycle. The
//! lock order is: products (by id), then the order, then its payment.

use sqlx::PgConnection;
use uuid::Uuid;

use super::orders::{Order, Release, ReleasedOrder, COLUMNS};
use super::payments::Settling;
use crate::db::Db;
use crate::error::{ApiError, ShortLine};

/// A product row as a checkout sees it, locked.
#[derive(Debug, sqlx::FromRow)]
struct Stocked {
    id: i64,
    stock: i64,
    price_cents: i64,
    currency: String,
}

/// Locks these products' rows, in id order (the one order every writer of
/// `stock` uses).
async fn lock_products(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Stocked>, sqlx::Error> {
    sqlx::query_as(
        "select id, stock, price_cents, currency from product
          where id = any($1) order by id for update",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// The products of a catalog order's lines, in id order.
async fn products_of(conn: &mut PgConnection, order_ids: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select distinct product_id from order_line where order_id = any($1) order by product_id",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await
}

/// Checks out `user_id`'s cart: every line is held in one transaction, or
/// none (`out_of_stock` naming each short line; `cart_empty`; a cart of two
/// currencies is `validation_failed`). The order waits for payment until
/// `hold_secs` from now by the database clock, and the cart is emptied.
pub async fn checkout(pool: &Db, user_id: i64, hold_secs: u32) -> Result<Order, ApiError> {
    let mut tx = pool.begin().await?;
    // The cart's rows are locked first: a second checkout of the same cart
    // waits, then finds it empty.
    let cart: Vec<(i64, i32)> = sqlx::query_as(
        "select product_id, quantity from cart_item where user_id = $1
          order by product_id for update",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    if cart.is_empty() {
        return Err(ApiError::CartEmpty);
    }
    let ids: Vec<i64> = cart.iter().map(|(id, _)| *id).collect();
    let products = lock_products(&mut tx, &ids).await?;

    let mut currencies: Vec<&str> = products.iter().map(|p| p.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        return Err(ApiError::field(
            "cart",
            format!(
                "holds books priced in {}; one order takes one currency, so check out one at a time",
                currencies.join(" and ")
            ),
        ));
    }
    let short: Vec<ShortLine> = cart
        .iter()
        .filter_map(|&(product_id, requested)| {
            let available = products
                .iter()
                .find(|p| p.id == product_id)
                .map_or(0, |p| p.stock);
            (available < i64::from(requested)).then_some(ShortLine {
                product_id,
                requested,
                available,
            })
        })
        .collect();
    if !short.is_empty() {
        // Nothing is held: the transaction ends without a write.
        return Err(ApiError::OutOfStock(short));
    }

    let qty: Vec<i32> = cart.iter().map(|(_, q)| *q).collect();
    // Today's price of each line (every product is there: a missing one is
    // a short line above).
    let prices: Vec<i64> = ids
        .iter()
        .map(|id| {
            products
                .iter()
                .find(|p| p.id == *id)
                .map_or(0, |p| p.price_cents)
        })
        .collect();
    let units: i32 = qty.iter().sum();
    let total: i64 = qty
        .iter()
        .zip(&prices)
        .map(|(q, p)| i64::from(*q) * p)
        .sum();
    // One statement: the order, its lines, the stock down and the sell
    // counts up by each line, and the cart emptied of what was checked out.
    let order_id: i64 = sqlx::query_scalar(
        "with o as (
             insert into purchase_order (user_id, quantity, total_cents, currency, status,
                                         expires_at)
             values ($1, $2, $3, $4, 'pending_payment', now() + make_interval(secs => $5))
             returning id),
         x as (select * from unnest($6::bigint[], $7::int[], $8::bigint[])
                          as x(product_id, quantity, price)),
         l as (insert into order_line (order_id, product_id, quantity, unit_price_cents,
                                       total_cents)
               select o.id, x.product_id, x.quantity, x.price, x.quantity * x.price from o, x),
         p as (update product set stock = stock - x.quantity,
                                  sell_count = sell_count + x.quantity
                 from x where product.id = x.product_id),
         c as (delete from cart_item where user_id = $1 and product_id = any($6))
         select id from o",
    )
    .bind(user_id)
    .bind(units)
    .bind(total)
    .bind(currencies[0])
    .bind(f64::from(hold_secs))
    .bind(&ids)
    .bind(&qty)
    .bind(&prices)
    .fetch_one(&mut *tx)
    .await?;
    let order: Order = sqlx::query_as(&format!(
        "select {COLUMNS} from purchase_order where id = $1"
    ))
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(order)
}

/// Ends these catalog orders for `why` where it applies (an order already
/// released, paid meanwhile or not yet due is left as it is) and puts their
/// units back in stock, with the buyer's email, in one transaction. A
/// refunded order's payment turns `refunding` in the same statement.
pub async fn release(
    pool: &Db,
    ids: &[i64],
    why: Release,
) -> Result<Vec<ReleasedOrder>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let products = products_of(&mut tx, ids).await?;
    lock_products(&mut tx, &products).await?;
    let released: Vec<ReleasedOrder> = sqlx::query_as(&format!(
        "with rel as (
             update purchase_order o set status = $2, released_at = now()
              where o.id = any($1) and o.sale_id is null and {condition}
             returning o.id, o.user_id, o.quantity),
         units as (select l.product_id, sum(l.quantity) as q
                     from order_line l join rel on rel.id = l.order_id
                    group by l.product_id),
         p as (update product set stock = stock + units.q, sell_count = sell_count - units.q
                 from units where product.id = units.product_id),
         m as (insert into outbox (kind, user_id, order_id)
               select $3, user_id, id from rel),
         r as (update payment set status = 'refunding', refund_claimed_until = null
                where $4 and order_id in (select id from rel) and status = 'succeeded')
         select id, user_id, quantity from rel",
        condition = why.condition(),
    ))
    .bind(ids)
    .bind(why.status())
    .bind(why.email())
    .bind(why == Release::Refunded)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(released)
}

/// Locks the products of a catalog order, first (before the order and its
/// payment), for a late payment's settling; returns whether every line's
/// units are in stock now.
pub async fn lock_for_retake(conn: &mut PgConnection, order_id: i64) -> Result<bool, sqlx::Error> {
    let products = products_of(conn, &[order_id]).await?;
    lock_products(conn, &products).await?;
    sqlx::query_scalar(
        "select coalesce(bool_and(p.stock >= l.quantity), false)
           from order_line l join product p on p.id = l.product_id
          where l.order_id = $1",
    )
    .bind(order_id)
    .fetch_one(conn)
    .await
}

/// A late payment takes a catalog order's units again: the order is paid
/// and live, every line's stock goes down and sell count up, the payment
/// succeeds and the buyer is told, in one statement. The caller holds the
/// products' locks ([`lock_for_retake`]) and found the units there.
pub async fn retake(
    conn: &mut PgConnection,
    payment_id: Uuid,
    s: &Settling,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "with o as (update purchase_order
                       set status = 'paid', paid_at = now(), released_at = null
                     where id = $2),
              l as (select product_id, quantity from order_line where order_id = $2),
              pr as (update product set stock = stock - l.quantity,
                                        sell_count = sell_count + l.quantity
                       from l where product.id = l.product_id),
              p as (update payment set status = 'succeeded', succeeded_at = now()
                     where id = $1)
         insert into outbox (kind, user_id, order_id) values ('payment_received', $3, $2)",
    )
    .bind(payment_id)
    .bind(s.order_id)
    .bind(s.user_id)
    .execute(conn)
    .await?;
    Ok(())
}
