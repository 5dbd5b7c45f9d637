//! The purchase rules, shared by both engines: the sale row read under its
//! lock, the window judged by the database clock, and the decision for one
//! buyer (steps 1 to 5 of [`crate::purchase`]).

use sqlx::PgConnection;

use crate::error::ApiError;

/// The sale row as read under its lock.
#[derive(sqlx::FromRow)]
pub struct LockedSale {
    pub product_id: i64,
    pub remaining: i64,
    pub price_cents: i64,
    pub per_user_limit: i32,
    /// Seconds a winner has to pay; 0 confirms at once.
    pub hold_secs: i32,
    /// Sells only to buyers admitted from its queue.
    pub waiting_room: bool,
    /// Sells only to buyers with a verified email address.
    pub verified_only: bool,
    pub cancelled: bool,
    pub not_started: bool,
    pub ended: bool,
}

/// Step 1: lock the sale row and read it, with the window judged by `now()`.
pub async fn lock_sale(conn: &mut PgConnection, sale_id: i64) -> Result<LockedSale, ApiError> {
    sqlx::query_as(
        "select product_id, remaining, price_cents, per_user_limit, hold_secs,
                waiting_room, verified_only, cancelled_at is not null as cancelled,
                now() < starts_at as not_started,
                now() >= ends_at as ended
           from sale where id = $1 for update",
    )
    .bind(sale_id)
    .fetch_optional(conn)
    .await?
    .ok_or(ApiError::NotFound("no such sale"))
}

/// Step 2: the refusal that applies to every buyer of the sale right now.
pub fn window_error(sale: &LockedSale) -> Option<ApiError> {
    if sale.cancelled {
        Some(ApiError::SaleCancelled)
    } else if sale.not_started {
        Some(ApiError::SaleNotStarted)
    } else if sale.ended {
        Some(ApiError::SaleEnded)
    } else {
        None
    }
}

/// What happens to one buyer.
pub enum Decision {
    Accept,
    Refuse(ApiError),
}

/// What the database says of one buyer, read under the sale's lock.
#[derive(Clone, Copy, Debug)]
pub struct BuyerFacts {
    /// The account exists (a token outlives nothing, but is only trusted here).
    pub exists: bool,
    pub disabled: bool,
    /// Has no verified email address while purchases require one.
    pub unverified: bool,
    /// Holds a live order in this sale.
    pub already: bool,
    /// The sale has a waiting room, and this buyer has no admitted, unexpired,
    /// unused ticket in it.
    pub not_admitted: bool,
}

/// Steps 3 to 5 for one buyer, given what the database says of them and the
/// stock left before them. The account is checked first: a purchase's token
/// is trusted for its signature only, and the account is read here.
pub fn decide(buyer: BuyerFacts, qty: i32, per_user_limit: i32, remaining: i64) -> Decision {
    if !buyer.exists {
        Decision::Refuse(ApiError::Unauthorized(
            "the account of this token no longer exists",
        ))
    } else if buyer.disabled {
        Decision::Refuse(ApiError::Forbidden("this account is disabled"))
    } else if buyer.unverified {
        Decision::Refuse(ApiError::EmailNotVerified)
    } else if buyer.already {
        Decision::Refuse(ApiError::AlreadyPurchased)
    } else if buyer.not_admitted {
        Decision::Refuse(ApiError::NotAdmitted)
    } else if qty > per_user_limit {
        Decision::Refuse(ApiError::QuantityExceedsLimit(per_user_limit))
    } else if remaining == 0 {
        Decision::Refuse(ApiError::SoldOut("sold out".into()))
    } else if i64::from(qty) > remaining {
        Decision::Refuse(ApiError::SoldOut(format!("only {remaining} left")))
    } else {
        Decision::Accept
    }
}
