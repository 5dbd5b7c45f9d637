//! Real parallel purchases against one sale, then the database is checked:
//! exactly the stock is sold, one order per shopper, and the counters agree
//! with the orders.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use flashsale::config::PurchaseMode;

use crate::helpers::{body, spawn_app, spawn_app_with, TestApp, TestUser};

/// What the database says about a sale, read in one snapshot.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    orders: i64,
    units: i64,
    stock: i64,
    remaining: i64,
    sell_count: i64,
    users_with_two_orders: i64,
}

async fn books(app: &TestApp, sale: i64) -> Books {
    let (orders, units, stock, remaining, sell_count, users_with_two_orders): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "select (select count(*) from purchase_order o where o.sale_id = s.id),
                (select coalesce(sum(quantity), 0)::bigint from purchase_order o where o.sale_id = s.id),
                s.stock, s.remaining, p.sell_count,
                (select count(*) from (select user_id from purchase_order o where o.sale_id = s.id
                                        group by user_id having count(*) > 1) twice)
           from sale s join product p on p.id = s.product_id where s.id = $1",
    )
    .bind(sale)
    .fetch_one(&app.pool)
    .await
    .expect("read the books");
    Books {
        orders,
        units,
        stock,
        remaining,
        sell_count,
        users_with_two_orders,
    }
}

/// Fires every `(user, request)` purchase at once, each on its own task, and
/// returns `(user id, status, body)` for each.
async fn purchase_all_at_once(
    app: &TestApp,
    client: &reqwest::Client,
    sale: i64,
    users: &[TestUser],
) -> Vec<(i64, u16, Value)> {
    let url = app.url(&format!("/api/v1/sales/{sale}/purchase"));
    let mut tasks = JoinSet::new();
    for user in users {
        let request = client
            .post(&url)
            .bearer_auth(&user.token)
            .json(&serde_json::json!({"quantity": 1}));
        let id = user.id;
        tasks.spawn(async move {
            let (status, v) = body(request.send().await.expect("send the purchase")).await;
            (id, status, v)
        });
    }
    let mut answers = Vec::with_capacity(users.len());
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("the request task"));
    }
    answers
}

fn count(answers: &[(i64, u16, Value)], status: u16, code: Option<&str>) -> usize {
    answers
        .iter()
        .filter(|(_, s, v)| *s == status && code.is_none_or(|c| v["error"]["code"] == c))
        .count()
}

/// `20 * stock` shoppers race for `stock` units.
async fn twenty_shoppers_per_unit_race_for(stock: i64, mode: PurchaseMode) {
    // Arrange
    let app = spawn_app_with(|s| s.purchase.mode = mode).await;
    let sale = app.active_sale(stock).await;
    let users = app.create_customers(20 * stock as usize).await;

    // Act
    let started = Instant::now();
    let answers = purchase_all_at_once(&app, &app.client, sale, &users).await;
    let elapsed = started.elapsed();
    eprintln!(
        "{} shoppers for {stock} units: {elapsed:?} ({:.0} requests/s)",
        users.len(),
        users.len() as f64 / elapsed.as_secs_f64()
    );

    // Assert: the answers
    let errors: Vec<_> = answers.iter().filter(|a| a.1 >= 500).collect();
    assert!(errors.is_empty(), "no 5xx: {errors:?}");
    let created = count(&answers, 201, None);
    let sold_out = count(&answers, 409, Some("sold_out"));
    assert_eq!(created, stock as usize, "exactly the stock is sold");
    assert_eq!(
        sold_out,
        answers.len() - stock as usize,
        "everyone else hears sold_out: {:?}",
        answers
            .iter()
            .find(|a| a.1 != 201 && a.2["error"]["code"] != "sold_out")
    );

    // Assert: the database
    assert_eq!(
        books(&app, sale).await,
        Books {
            orders: stock,
            units: stock,
            stock,
            remaining: 0,
            sell_count: stock,
            users_with_two_orders: 0,
        }
    );
    let winners: HashSet<i64> = answers
        .iter()
        .filter(|a| a.1 == 201)
        .map(|a| a.2["user_id"].as_i64().expect("user_id"))
        .collect();
    assert_eq!(
        winners,
        answers.iter().filter(|a| a.1 == 201).map(|a| a.0).collect(),
        "each order belongs to the shopper who got the 201"
    );
    let buyers: HashSet<i64> =
        sqlx::query_scalar("select user_id from purchase_order where sale_id = $1")
            .bind(sale)
            .fetch_all(&app.pool)
            .await
            .expect("buyers")
            .into_iter()
            .collect();
    assert_eq!(
        buyers, winners,
        "every 201 is an order that exists, and only those"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_shoppers_for_one_unit_make_exactly_one_order() {
    twenty_shoppers_per_unit_race_for(1, PurchaseMode::Combined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_shoppers_for_five_units_make_exactly_five_orders() {
    twenty_shoppers_per_unit_race_for(5, PurchaseMode::Combined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_shoppers_for_a_hundred_units_make_exactly_a_hundred_orders() {
    twenty_shoppers_per_unit_race_for(100, PurchaseMode::Combined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_transaction_per_purchase_also_sells_exactly_the_stock() {
    twenty_shoppers_per_unit_race_for(1, PurchaseMode::PerPurchase).await;
    twenty_shoppers_per_unit_race_for(100, PurchaseMode::PerPurchase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_simultaneous_requests_per_shopper_make_one_order_each() {
    ten_simultaneous_requests_per_shopper(PurchaseMode::Combined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_transaction_per_purchase_also_gives_one_order_per_shopper() {
    ten_simultaneous_requests_per_shopper(PurchaseMode::PerPurchase).await;
}

async fn ten_simultaneous_requests_per_shopper(mode: PurchaseMode) {
    // Arrange
    let app = spawn_app_with(|s| s.purchase.mode = mode).await;
    let stock = 1000;
    let sale = app.active_sale(stock).await;
    let shoppers = app.create_customers(50).await;
    let requests: Vec<TestUser> = shoppers
        .iter()
        .flat_map(|u| std::iter::repeat_n(u.clone(), 10))
        .collect();

    // Act
    let started = Instant::now();
    let answers = purchase_all_at_once(&app, &app.client, sale, &requests).await;
    eprintln!(
        "50 shoppers x 10 simultaneous requests: {:?}",
        started.elapsed()
    );

    // Assert: the answers
    let errors: Vec<_> = answers.iter().filter(|a| a.1 >= 500).collect();
    assert!(errors.is_empty(), "no 5xx: {errors:?}");
    assert_eq!(count(&answers, 201, None), 50);
    assert_eq!(count(&answers, 409, Some("already_purchased")), 450);
    for shopper in &shoppers {
        let won = answers
            .iter()
            .filter(|a| a.0 == shopper.id && a.1 == 201)
            .count();
        assert_eq!(won, 1, "shopper {} has exactly one 201", shopper.id);
    }

    // Assert: the database
    assert_eq!(
        books(&app, sale).await,
        Books {
            orders: 50,
            units: 50,
            stock,
            remaining: stock - 50,
            sell_count: 50,
            users_with_two_orders: 0,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shoppers_who_hang_up_mid_purchase_leave_the_books_consistent() {
    // Arrange: three shoppers per unit, each first with a client that gives
    // up after 1 to 25 ms, so requests are cut off at every stage.
    let app = spawn_app().await;
    let stock = 100;
    let sale = app.active_sale(stock).await;
    let users = app.create_customers(300).await;
    let impatient = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = app.url(&format!("/api/v1/sales/{sale}/purchase"));

    // Act 1: everyone hangs up.
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let request = impatient
            .post(&url)
            .bearer_auth(&user.token)
            .json(&serde_json::json!({"quantity": 1}))
            .timeout(Duration::from_millis(1 + (i as u64 % 25)));
        tasks.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    let mut answered = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        if let Ok(status) = outcome.expect("the request task") {
            answered.push(status);
        }
    }
    assert!(
        answered.iter().all(|s| *s < 500),
        "no 5xx even for impatient clients: {answered:?}"
    );

    // Assert 1: whatever committed so far, it committed whole.
    let mid = books(&app, sale).await;
    assert_eq!(mid.orders, mid.stock - mid.remaining, "{mid:?}");
    assert_eq!(mid.sell_count, mid.orders, "{mid:?}");
    assert_eq!(mid.users_with_two_orders, 0, "{mid:?}");

    // Act 2: everyone tries once more, patiently.
    let answers = purchase_all_at_once(&app, &app.client, sale, &users).await;
    eprintln!(
        "300 impatient then 300 patient shoppers for {stock} units: {:?}; \
         {} impatient requests were answered in time",
        started.elapsed(),
        answered.len()
    );

    // Assert 2: with three shoppers per unit some must hear sold_out, so the
    // stock is gone for good and every unit is an order, whoever placed it.
    let errors: Vec<_> = answers.iter().filter(|a| a.1 >= 500).collect();
    assert!(errors.is_empty(), "no 5xx: {errors:?}");
    let created = count(&answers, 201, None);
    let already = count(&answers, 409, Some("already_purchased"));
    let sold_out = count(&answers, 409, Some("sold_out"));
    assert_eq!(
        created + already + sold_out,
        answers.len(),
        "only created, already_purchased or sold_out"
    );
    assert_eq!(created + already, stock as usize, "one order per buyer");
    eprintln!("orders placed by clients that hung up: {already}");
    assert_eq!(
        books(&app, sale).await,
        Books {
            orders: stock,
            units: stock,
            stock,
            remaining: 0,
            sell_count: stock,
            users_with_two_orders: 0,
        }
    );
}
