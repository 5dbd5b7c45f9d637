//! A shopper's cart, kept in PostgreSQL (it survives restarts, other
//! instances and new logins). Nothing is held until checkout
//! ([`super::catalog::checkout`]): the cart shows today's prices and whether
//! each line is in stock in its quantity now.

use serde::Serialize;

use super::products::Product;
use crate::db::Db;
use crate::error::ApiError;

/// Most distinct products one cart holds.
pub const MAX_LINES: i64 = 50;

/// One line of a cart.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CartItem {
    pub product: Product,
    /// 1 to 100.
    pub quantity: i32,
    /// Today's price of one copy.
    pub unit_price_cents: i64,
    /// `quantity × unit_price_cents`.
    pub total_cents: i64,
    /// Whether the stock holds this quantity now (`product.stock` says how
    /// many there are).
    pub available: bool,
}

/// A cart as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Cart {
    /// Oldest line first.
    pub items: Vec<CartItem>,
    /// Sum of the lines, when they share one currency (`null` otherwise: a
    /// cart of two currencies cannot be checked out as it is).
    pub total_cents: Option<i64>,
    /// The lines' one currency; `null` for an empty cart or one of several
    /// currencies.
    pub currency: Option<String>,
    /// Every line is available and there is one currency: checkout can hold
    /// it all (unless someone else is quicker).
    pub ready: bool,
}

/// `user_id`'s cart.
pub async fn get(pool: &Db, user_id: i64) -> Result<Cart, ApiError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        product: Product,
        quantity: i32,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "select p.id, p.seller_id, p.name, p.description, p.price_cents, p.currency,
                p.sell_count, p.stock, p.created_at, c.quantity
           from cart_item c join product p on p.id = c.product_id
          where c.user_id = $1
          order by c.added_at, c.product_id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    let items: Vec<CartItem> = rows
        .into_iter()
        .map(|r| CartItem {
            unit_price_cents: r.product.price_cents,
            total_cents: r.product.price_cents * i64::from(r.quantity),
            available: r.product.stock >= i64::from(r.quantity),
            quantity: r.quantity,
            product: r.product,
        })
        .collect();
    let mut currencies: Vec<&str> = items.iter().map(|i| i.product.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    let currency = match currencies.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    };
    let total_cents = match currencies.len() {
        0 => Some(0),
        1 => Some(items.iter().map(|i| i.total_cents).sum()),
        _ => None,
    };
    Ok(Cart {
        ready: currency.is_some() && items.iter().all(|i| i.available),
        items,
        total_cents,
        currency,
    })
}

/// Puts `quantity` copies of a product in the cart (replacing what was
/// there). `not_found` for an unknown product; `validation_failed` past
/// [`MAX_LINES`] products.
pub async fn put(pool: &Db, user_id: i64, product_id: i64, quantity: i32) -> Result<(), ApiError> {
    // One statement: the product must exist, and a new line must fit.
    let done = sqlx::query(
        "insert into cart_item (user_id, product_id, quantity)
         select $1, $2, $3
          where exists (select 1 from product where id = $2)
            and (exists (select 1 from cart_item where user_id = $1 and product_id = $2)
                 or (select count(*) from cart_item where user_id = $1) < $4)
         on conflict (user_id, product_id) do update set quantity = excluded.quantity",
    )
    .bind(user_id)
    .bind(product_id)
    .bind(quantity)
    .bind(MAX_LINES)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let exists: bool = sqlx::query_scalar("select exists (select 1 from product where id = $1)")
        .bind(product_id)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(ApiError::NotFound("no such product"));
    }
    Err(ApiError::field(
        "product_id",
        format!("a cart holds at most {MAX_LINES} different books"),
    ))
}

/// Takes a product out of the cart (nothing happens if it is not there).
pub async fn remove(pool: &Db, user_id: i64, product_id: i64) -> Result<(), ApiError> {
    sqlx::query("delete from cart_item where user_id = $1 and product_id = $2")
        .bind(user_id)
        .bind(product_id)
        .execute(pool)
        .await?;
    Ok(())
}
