//! Checking out a cart: every line held at once or none, paid like a sale's
//! hold, released back to the catalog stock on failure, expiry or cancel,
//! and many overlapping carts at once without oversell or deadlock. The
//! database is checked after each.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use flashsale::auth::Role;

use crate::cart::{book, cart_of, checkout, set};
use crate::helpers::{body, spawn_app, spawn_app_with, TestApp, TestUser};
use crate::holds::wait_for_status;
use crate::payments::{decide, emails, open_payment, payments_consistent, wait_for_payment};

/// The catalog invariants, for products whose sellers put in `put_in`
/// copies: `stock + live catalog units = put in`, and `sell_count = live
/// units` of both kinds.
pub(crate) async fn catalog_consistent(app: &TestApp, put_in: &HashMap<i64, i64>) {
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "select p.id, p.stock, p.sell_count,
                coalesce((select sum(l.quantity) from order_line l
                            join purchase_order o on o.id = l.order_id
                           where l.product_id = p.id
                             and o.status in ('pending_payment', 'paid', 'confirmed')), 0)::bigint,
                coalesce((select sum(o.quantity) from purchase_order o
                           where o.product_id = p.id
                             and o.status in ('pending_payment', 'paid', 'confirmed')), 0)::bigint
           from product p order by p.id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("read the books");
    for (id, stock, sell_count, catalog_live, sale_live) in rows {
        let want = put_in.get(&id).copied().unwrap_or(0);
        assert_eq!(
            stock + catalog_live,
            want,
            "product {id}: stock {stock} + held {catalog_live}"
        );
        assert_eq!(
            sell_count,
            catalog_live + sale_live,
            "product {id}: sell_count"
        );
        assert!(stock >= 0);
    }
}

fn lines(order: &Value) -> Vec<(i64, i64, i64)> {
    order["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["product_id"].as_i64().unwrap(),
                l["quantity"].as_i64().unwrap(),
                l["total_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A shopper with a cart of `(product, quantity)`, checked out: the order.
pub(crate) async fn held(app: &TestApp, shopper: &TestUser, cart: &[(i64, i64)]) -> Value {
    for (product, quantity) in cart {
        set(app, shopper, *product, *quantity).await;
    }
    let (status, order) = checkout(app, shopper).await;
    assert_eq!(status, 201, "{order}");
    order
}

#[tokio::test]
async fn a_checkout_holds_every_line_until_paid_and_shows_in_the_orders_and_revenue() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let a = book(&app, &seller, "Alpha", 1200, 5, "EUR").await;
    let b = book(&app, &seller, "Beta", 800, 3, "EUR").await;
    let shopper = app.create_user(Role::Customer).await;
    let before = app.db_now().await;

    let order = held(&app, &shopper, &[(b, 1), (a, 2)]).await;
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["sale_id"], Value::Null);
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["total_cents"], 3200);
    assert_eq!(lines(&order), vec![(a, 2, 2400), (b, 1, 800)]);
    let expires: chrono::DateTime<chrono::Utc> = order["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .expect("expires_at");
    let hold = (expires - before).num_seconds();
    assert!((899..=905).contains(&hold), "CART_HOLD_SECS is 900: {hold}");
    assert_eq!(
        cart_of(&app, &shopper).await["items"],
        json!([]),
        "the cart empties"
    );
    let put_in = HashMap::from([(a, 5), (b, 3)]);
    catalog_consistent(&app, &put_in).await;
    assert_eq!(
        app.scalar_i64(&format!("select stock from product where id = {a}"))
            .await,
        3
    );

    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(&app, &shopper, id).await;
    assert_eq!(payment["amount_cents"], 3200);
    assert_eq!(payment["currency"], "EUR");
    let (status, v) = decide(&app, &payment, "4242424242424242").await;
    assert_eq!(status, 200, "{v}");
    wait_for_status(&app.pool, id, "paid").await;
    assert_eq!(emails(&app, "payment_received", id).await, 1);
    catalog_consistent(&app, &put_in).await;
    payments_consistent(&app).await;

    let (_, mine) = body(app.get("/api/v1/orders", Some(&shopper.token)).await).await;
    assert_eq!(mine["items"][0]["id"], id, "{mine}");
    assert_eq!(lines(&mine["items"][0]), vec![(a, 2, 2400), (b, 1, 800)]);
    let (_, revenue) = body(app.get("/api/v1/seller/revenue", Some(&seller.token)).await).await;
    assert_eq!(revenue["total_revenue_cents"], 3200, "{revenue}");
    assert_eq!(
        revenue["totals"],
        json!([{"currency": "EUR", "units": 3, "revenue_cents": 3200}])
    );
    let (_, best) = body(app.get("/api/v1/products?sort=best_selling", None).await).await;
    assert_eq!(best["items"][0]["id"], a, "{best}");
    assert_eq!(best["items"][0]["sell_count"], 2);
}

#[tokio::test]
async fn a_short_line_refuses_the_whole_checkout_naming_it_and_holds_nothing() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let many = book(&app, &seller, "Many", 1000, 5, "EUR").await;
    let one = book(&app, &seller, "One", 1000, 1, "EUR").await;
    let none = book(&app, &seller, "Sales only", 1000, 0, "EUR").await;
    let shopper = app.create_user(Role::Customer).await;
    set(&app, &shopper, many, 2).await;
    set(&app, &shopper, one, 2).await;
    set(&app, &shopper, none, 1).await;
    let (status, v) = checkout(&app, &shopper).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("out_of_stock")),
        "{v}"
    );
    assert_eq!(
        v["error"]["details"]["lines"],
        json!([{"product_id": one, "requested": 2, "available": 1},
               {"product_id": none, "requested": 1, "available": 0}])
    );
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );
    assert_eq!(
        app.scalar_i64("select sum(stock)::bigint from product")
            .await,
        6
    );
    assert_eq!(
        app.scalar_i64("select sum(sell_count)::bigint from product")
            .await,
        0
    );
    assert_eq!(
        cart_of(&app, &shopper).await["items"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "the cart stays"
    );
}

#[tokio::test]
async fn overlapping_carts_checked_out_at_once_never_oversell_and_never_deadlock() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let mut books = Vec::new();
    let mut put_in = HashMap::new();
    for i in 0..5 {
        let id = book(&app, &seller, &format!("Last copies {i}"), 500, 4, "EUR").await;
        books.push(id);
        put_in.insert(id, 4);
    }
    // PostgreSQL's deadlock counter, read on a connection of the test's own
    // (the server's backends report theirs when they end, at the latest).
    let watcher = app.fresh_pool().await;
    let deadlocks = || async {
        sqlx::query_scalar::<_, i64>(
            "select deadlocks::bigint from pg_stat_database where datname = current_database()",
        )
        .fetch_one(&watcher)
        .await
        .expect("pg_stat_database")
    };
    let deadlocks_before = deadlocks().await;
    // 40 shoppers, each with two to four of the five books, put in the cart
    // in different orders: the checkouts lock in product id order anyway.
    let shoppers = app.create_customers(40).await;
    for (n, s) in shoppers.iter().enumerate() {
        let len = 2 + n % 3;
        for k in 0..len {
            let product = books[(n * 7 + k * (1 + n % 4)) % books.len()];
            set(&app, s, product, 1 + (n % 2) as i64).await;
        }
    }
    let mut set_of = JoinSet::new();
    for s in shoppers.clone() {
        let client = app.client.clone();
        let url = app.url("/api/v1/cart/checkout");
        set_of.spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(&s.token)
                .send()
                .await
                .expect("checkout");
            body(resp).await
        });
    }
    let mut won = 0;
    while let Some(answer) = set_of.join_next().await {
        let (status, v) = answer.expect("task");
        match status {
            201 => won += 1,
            409 => {
                assert_eq!(v["error"]["code"], "out_of_stock", "{v}");
                let short = v["error"]["details"]["lines"].as_array().expect("lines");
                assert!(!short.is_empty());
                for l in short {
                    assert!(
                        l["available"].as_i64().unwrap() < l["requested"].as_i64().unwrap(),
                        "{l}"
                    );
                }
            }
            other => panic!("a checkout answered {other}: {v}"),
        }
    }
    assert!(won >= 1, "someone must get their books");
    let stock = app
        .scalar_i64("select sum(stock)::bigint from product")
        .await;
    assert!(stock < 20, "books were sold: {stock}");
    catalog_consistent(&app, &put_in).await;
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        won,
        "one order per 201, and none for a refusal"
    );
    // A deadlock would also have been answered `busy` above; the counter
    // tells even of one that a retry hid. The server's connections close
    // first, so every backend's count is in.
    app.stop().await;
    let start = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()",
    )
    .fetch_one(&watcher)
    .await
    .expect("pg_stat_activity")
        > 0
    {
        assert!(
            start.elapsed().as_secs() < 10,
            "the server's connections did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        deadlocks().await,
        deadlocks_before,
        "PostgreSQL counted a deadlock"
    );
}

#[tokio::test]
async fn an_unpaid_checkout_expires_and_a_declined_one_fails_and_their_books_go_back() {
    let app = spawn_app_with(|s| s.cart_hold_secs = 1).await;
    let seller = app.create_user(Role::Seller).await;
    let a = book(&app, &seller, "Alpha", 1000, 2, "EUR").await;
    let b = book(&app, &seller, "Beta", 1000, 2, "EUR").await;
    let put_in = HashMap::from([(a, 2), (b, 2)]);
    let walker = app.create_user(Role::Customer).await;
    let order = held(&app, &walker, &[(a, 2), (b, 1)]).await;
    let id = order["id"].as_i64().unwrap();
    wait_for_status(&app.pool, id, "expired").await;
    assert_eq!(emails(&app, "hold_expired", id).await, 1);
    catalog_consistent(&app, &put_in).await;
    assert_eq!(
        app.scalar_i64("select sum(stock)::bigint from product")
            .await,
        4
    );

    // A decline, on a server whose holds last.
    let app2 = app.another_instance_with(|s| s.cart_hold_secs = 900).await;
    let declined = app.create_user(Role::Customer).await;
    let order = held(&app2, &declined, &[(a, 1), (b, 2)]).await;
    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(&app2, &declined, id).await;
    decide(&app2, &payment, "4000000000000002").await;
    wait_for_status(&app.pool, id, "payment_failed").await;
    assert_eq!(emails(&app, "payment_failed", id).await, 1);
    catalog_consistent(&app, &put_in).await;
    assert_eq!(
        app.scalar_i64("select sum(stock)::bigint from product")
            .await,
        4
    );
    payments_consistent(&app).await;
}

#[tokio::test]
async fn a_late_payment_takes_its_books_again_or_is_refunded_when_one_is_gone() {
    let app = spawn_app_with(|s| s.cart_hold_secs = 1).await;
    let seller = app.create_user(Role::Seller).await;
    let a = book(&app, &seller, "Alpha", 1000, 1, "EUR").await;
    let b = book(&app, &seller, "Beta", 700, 2, "EUR").await;
    let mut put_in = HashMap::from([(a, 1), (b, 2)]);

    // Late, and every book still there: paid after all.
    let late = app.create_user(Role::Customer).await;
    let order = held(&app, &late, &[(a, 1), (b, 1)]).await;
    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(&app, &late, id).await;
    wait_for_status(&app.pool, id, "expired").await;
    decide(&app, &payment, "succeed").await;
    wait_for_status(&app.pool, id, "paid").await;
    catalog_consistent(&app, &put_in).await;
    payments_consistent(&app).await;

    // Late, and one book taken meanwhile: refunded, nothing taken.
    let slow = app.create_user(Role::Customer).await;
    let order = held(&app, &slow, &[(b, 1)]).await;
    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(&app, &slow, id).await;
    wait_for_status(&app.pool, id, "expired").await;
    // The seller sells the last copy elsewhere: the stock is set to 0.
    let (status, _) = body(
        app.patch(
            &format!("/api/v1/products/{b}"),
            Some(&seller.token),
            &json!({"stock": 0}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    put_in.insert(b, 1);
    decide(&app, &payment, "succeed").await;
    wait_for_status(&app.pool, id, "refunded").await;
    wait_for_payment(&app.pool, &payment, "refunded").await;
    assert_eq!(emails(&app, "order_refunded", id).await, 1);
    catalog_consistent(&app, &put_in).await;
    payments_consistent(&app).await;
}

#[tokio::test]
async fn an_admin_cancels_a_held_checkout_and_refunds_a_paid_one() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let admin = app.create_user(Role::Admin).await;
    let a = book(&app, &seller, "Alpha", 1000, 3, "EUR").await;
    let put_in = HashMap::from([(a, 3)]);
    let cancel = |id: i64| {
        let app = &app;
        let token = admin.token.clone();
        async move {
            body(
                app.post(
                    &format!("/api/v1/admin/orders/{id}/cancel"),
                    Some(&token),
                    &json!({}),
                )
                .await,
            )
            .await
        }
    };

    let first = app.create_user(Role::Customer).await;
    let order = held(&app, &first, &[(a, 1)]).await;
    let (status, v) = cancel(order["id"].as_i64().unwrap()).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("cancelled")),
        "{v}"
    );
    catalog_consistent(&app, &put_in).await;

    let second = app.create_user(Role::Customer).await;
    let order = held(&app, &second, &[(a, 2)]).await;
    let id = order["id"].as_i64().unwrap();
    let payment = open_payment(&app, &second, id).await;
    decide(&app, &payment, "succeed").await;
    wait_for_status(&app.pool, id, "paid").await;
    let (status, v) = cancel(id).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("refunded")),
        "{v}"
    );
    wait_for_payment(&app.pool, &payment, "refunded").await;
    catalog_consistent(&app, &put_in).await;
    payments_consistent(&app).await;
    let (status, v) = cancel(id).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("order_not_cancellable")),
        "{v}"
    );
}
