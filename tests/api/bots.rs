//! Against bots beyond the queue: a per-IP purchase limit beside the
//! per-user one (off unless configured), and sales that sell only to
//! verified email addresses.

use serde_json::json;

use flashsale::auth::Role;
use flashsale::config::Rate;

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with};

#[tokio::test]
async fn one_address_is_limited_across_accounts_when_configured() {
    // Three attempts at once, then one a second, from any account at one address.
    let app = spawn_app_with(|s| s.purchase_ip_rate = Some(Rate::new(1, 3))).await;
    let sale = app.active_sale(100).await;
    let users = app.create_customers(6).await;
    let mut codes = Vec::new();
    for u in &users {
        let (status, v) = body(app.purchase(sale, u, None).await).await;
        codes.push((
            status,
            v["error"]["code"].as_str().unwrap_or("").to_string(),
        ));
    }
    let created = codes.iter().filter(|(s, _)| *s == 201).count();
    let limited = codes
        .iter()
        .filter(|(s, c)| *s == 429 && c == "rate_limited")
        .count();
    assert_eq!((created, limited), (3, 3), "{codes:?}");
    let orders = app
        .scalar_i64(&format!(
            "select count(*) from purchase_order where sale_id = {sale}"
        ))
        .await;
    assert_eq!(orders, 3, "a refused attempt writes nothing");

    // Off by default: six accounts at one address all buy.
    let open = spawn_app().await;
    let sale = open.active_sale(100).await;
    for u in &open.create_customers(6).await {
        open.buy(sale, u, 1).await;
    }
}

#[tokio::test]
async fn a_verified_only_sale_sells_to_verified_addresses() {
    let app = spawn_app().await;
    let product = app.create_product(2500).await;
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await - chrono::Duration::seconds(60);
    let (status, v) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": product, "starts_at": starts,
                    "ends_at": starts + chrono::Duration::seconds(3600),
                    "stock": 5, "hold_secs": 0, "verified_only": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["verified_only"], true);
    let sale = v["id"].as_i64().expect("id");
    let unverified = app.create_user(Role::Customer).await;
    let verified = app.create_user(Role::Customer).await;
    sqlx::query("update app_user set email_verified_at = now() where id = $1")
        .bind(verified.id)
        .execute(&app.pool)
        .await
        .expect("verify");
    assert_error(
        app.purchase(sale, &unverified, None).await,
        403,
        "email_not_verified",
    )
    .await;
    app.buy(sale, &verified, 1).await;
    let orders = app
        .scalar_i64(&format!(
            "select count(*) from purchase_order where sale_id = {sale}"
        ))
        .await;
    assert_eq!(orders, 1);
}
