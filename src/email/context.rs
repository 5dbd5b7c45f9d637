//! The template values of each kind of email, read when it is sent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::outbox::{Claimed, SendError};
use super::{money, Kind};
use crate::db::Db;

/// The recipient and the template values of a row, read at send time.
pub(super) async fn load(
    pool: &Db,
    base_url: &str,
    kind: Kind,
    row: &Claimed,
) -> Result<(Mailbox, Value), SendError> {
    #[derive(sqlx::FromRow)]
    struct Recipient {
        username: String,
        email: String,
        unsubscribe_token: String,
    }
    let user: Option<Recipient> = sqlx::query_as(
        "select username, email, unsubscribe_token::text as unsubscribe_token
           from app_user where id = $1",
    )
    .bind(row.user_id)
    .fetch_optional(pool)
    .await?;
    let user = user.ok_or_else(|| SendError::permanent("the recipient no longer exists"))?;
    let to = Mailbox::new(
        Some(user.username.clone()),
        user.email
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?,
    );
    let payload: Value = match &row.payload {
        Some(p) => {
            serde_json::from_str(p).map_err(|e| SendError::permanent(format!("payload: {e}")))?
        }
        None => Value::Null,
    };
    let mut ctx = match kind {
        Kind::OrderConfirmation
        | Kind::HoldExpired
        | Kind::OrderCancelled
        | Kind::PaymentReceived
        | Kind::PaymentFailed
        | Kind::OrderRefunded => order_context(pool, row.order_id).await?,
        Kind::VerifyEmail => token_context(base_url, &payload, "/api/v1/auth/verify")?,
        Kind::PasswordReset => token_context(base_url, &payload, "/reset-password")?,
        Kind::SellerDailyDigest | Kind::SellerMonthlyReport => report_context(&payload)?,
        Kind::NewProducts => {
            let mut ctx = products_context(&payload)?;
            ctx["unsubscribe_link"] = json!(format!(
                "{}/api/v1/unsubscribe?token={}",
                base_url, user.unsubscribe_token
            ));
            ctx
        }
    };
    ctx["username"] = json!(user.username);
    ctx["shop_url"] = json!(base_url);
    Ok((to, ctx))
}

async fn order_context(pool: &Db, order_id: Option<i64>) -> Result<Value, SendError> {
    #[derive(sqlx::FromRow)]
    struct OrderRow {
        number: String,
        quantity: i32,
        unit_price_cents: Option<i64>,
        total_cents: i64,
        created_at: DateTime<Utc>,
        product: String,
        currency: String,
    }
    // A sale order names its product; a catalog order its lines
    // ("Name × 2, Other name").
    let order: Option<OrderRow> = sqlx::query_as(
        "select o.number, o.quantity, o.unit_price_cents, o.total_cents, o.created_at,
                o.currency,
                coalesce((select p.name from product p where p.id = o.product_id),
                         (select string_agg(p.name || case when l.quantity > 1
                                                           then ' × ' || l.quantity else '' end,
                                            ', ' order by p.id)
                            from order_line l join product p on p.id = l.product_id
                           where l.order_id = o.id),
                         '') as product
           from purchase_order o
          where o.id = $1",
    )
    .bind(order_id.unwrap_or(0))
    .fetch_optional(pool)
    .await?;
    let o = order.ok_or_else(|| SendError::permanent("the order no longer exists"))?;
    Ok(json!({
        "order_number": o.number,
        "product": o.product,
        "quantity": o.quantity,
        "unit_price": o.unit_price_cents.map(|c| money(c, &o.currency)),
        "total": money(o.total_cents, &o.currency),
        "ordered_at": o.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        "order_id": order_id,
    }))
}

fn token_context(base_url: &str, payload: &Value, path: &str) -> Result<Value, SendError> {
    #[derive(Deserialize)]
    struct TokenPayload {
        token: String,
        expires_at: DateTime<Utc>,
    }
    let p: TokenPayload = serde_json::from_value(payload.clone())
        .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
    Ok(json!({
        "link": format!("{}{path}?token={}", base_url, p.token),
        "expires_at": p.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    }))
}

#[derive(Deserialize)]
struct ReportLine {
    product: String,
    currency: String,
    #[serde(default)]
    orders: i64,
    units: i64,
    revenue_cents: i64,
}

#[derive(Serialize)]
struct ReportLineOut {
    product: String,
    orders: i64,
    units: i64,
    revenue: String,
}

/// Digest and report payloads: money formatted, totals per currency.
fn report_context(payload: &Value) -> Result<Value, SendError> {
    #[derive(Deserialize)]
    struct Report {
        period: String,
        lines: Vec<ReportLine>,
    }
    let r: Report = serde_json::from_value(payload.clone())
        .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for l in &r.lines {
        *totals.entry(l.currency.clone()).or_default() += l.revenue_cents;
    }
    let lines: Vec<ReportLineOut> = r
        .lines
        .into_iter()
        .map(|l| ReportLineOut {
            revenue: money(l.revenue_cents, &l.currency),
            product: l.product,
            orders: l.orders,
            units: l.units,
        })
        .collect();
    let totals: Vec<String> = totals.iter().map(|(c, v)| money(*v, c)).collect();
    Ok(json!({ "period": r.period, "lines": lines, "totals": totals }))
}

fn products_context(payload: &Value) -> Result<Value, SendError> {
    #[derive(Deserialize)]
    struct Product {
        name: String,
        description: String,
        price_cents: i64,
        currency: String,
        seller: String,
    }
    #[derive(Deserialize)]
    struct Announcement {
        products: Vec<Product>,
    }
    let a: Announcement = serde_json::from_value(payload.clone())
        .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
    let products: Vec<Value> = a
        .products
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "description": p.description,
                "price": money(p.price_cents, &p.currency),
                "seller": p.seller,
            })
        })
        .collect();
    Ok(json!({ "products": products }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_totals_are_per_currency() {
        let ctx = report_context(&json!({"period": "2026-11-20", "lines": [
            {"product": "A", "currency": "EUR", "orders": 2, "units": 2, "revenue_cents": 3998},
            {"product": "B", "currency": "USD", "orders": 1, "units": 1, "revenue_cents": 500},
            {"product": "C", "currency": "EUR", "orders": 1, "units": 1, "revenue_cents": 2}
        ]}))
        .unwrap();
        assert_eq!(ctx["totals"], json!(["40.00 EUR", "5.00 USD"]));
        assert_eq!(ctx["lines"][0]["revenue"], "39.98 EUR");
    }
}
