//! The waiting room's admission: places admitted in order and never faster
//! than the sale's rate, admissions that lapse, sold out reaching everyone
//! still waiting, and another instance taking over the admitting.

use std::time::Duration;

use chrono::{DateTime, Utc};

use serde_json::json;

use flashsale::auth::Role;

use crate::helpers::{assert_error, body, spawn_app};
use crate::queue::{at_place, join, line_up, room_sale, start_in, ticket, until};

#[tokio::test]
async fn places_are_admitted_in_order_at_the_rate_and_lapse_unused() {
    let app = spawn_app().await;
    // Twenty a second, ten seconds to buy: forty places take two seconds.
    let sale = room_sale(&app, 3600, 100, 20, 10).await;
    let users = line_up(&app, sale, 40, 40).await;
    let (starts, admission_secs): (DateTime<Utc>, i32) =
        sqlx::query_as("select starts_at, admission_secs from sale where id = $1")
            .bind(sale)
            .fetch_one(&app.pool)
            .await
            .expect("sale");
    let admitted: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "select position, admitted_until from queue_ticket where sale_id = $1 order by position",
    )
    .bind(sale)
    .fetch_all(&app.pool)
    .await
    .expect("tickets");
    let mut before = starts;
    for (place, until) in &admitted {
        let at = *until - chrono::Duration::seconds(i64::from(admission_secs));
        // Never early: place p is earned p / rate seconds after the start.
        let earned = starts + chrono::Duration::microseconds(i64::from(*place) * 1_000_000 / 20);
        assert!(
            at >= earned - chrono::Duration::milliseconds(1),
            "place {place} admitted at {at}, before it was earned at {earned}"
        );
        assert!(
            at >= before,
            "place {place} admitted before an earlier place"
        );
        before = at;
    }
    // The first admitted shopper buys; everyone else lets the time run out.
    let first = at_place(&app, sale, &users, 1).await;
    app.buy(sale, first, 1).await;
    let second = at_place(&app, sale, &users, 2).await;
    assert_eq!(ticket(&app, sale, second).await["state"], "admitted");
    until(
        &app,
        "the second place's admission to run out",
        &format!(
        "select admitted_until < now() from queue_ticket where sale_id = {sale} and position = 2"
    ),
    )
    .await;
    let t = ticket(&app, sale, second).await;
    assert_eq!(t["state"], "lapsed", "{t}");
    assert_error(app.purchase(sale, second, None).await, 403, "not_admitted").await;
    assert_eq!(ticket(&app, sale, first).await["state"], "used");
    let orders = app
        .scalar_i64(&format!(
            "select count(*) from purchase_order where sale_id = {sale}"
        ))
        .await;
    assert_eq!(orders, 1, "one sale: the lapsed admission bought nothing");
}

#[tokio::test]
async fn sold_out_reaches_every_waiting_ticket_and_admission_pauses() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 3600, 1, 2, 120).await;
    let users = line_up(&app, sale, 10, 1).await;
    let buyer = at_place(&app, sale, &users, 1).await;
    app.buy(sale, buyer, 1).await;
    let through: i64 = app
        .scalar_i64(&format!(
            "select admitted_through::bigint from sale_queue where sale_id = {sale}"
        ))
        .await;
    // Pushed state: the status every waiting page follows says sold out.
    let (_, status) = body(app.get(&format!("/api/v1/sales/{sale}/status"), None).await).await;
    assert_eq!(status["state"], "sold_out", "{status}");
    let waiting = at_place(&app, sale, &users, 10).await;
    assert_eq!(ticket(&app, sale, waiting).await["state"], "sold_out");
    // Nothing is admitted while nothing is left (several steps' worth).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = app
        .scalar_i64(&format!(
            "select admitted_through::bigint from sale_queue where sale_id = {sale}"
        ))
        .await;
    assert!(
        after <= through + 1,
        "admitted {through} then {after} with no stock"
    );
}

#[tokio::test]
async fn another_instance_takes_over_admission_when_the_admitter_stops() {
    let a = spawn_app().await;
    let sale = room_sale(&a, 3600, 100, 5, 120).await;
    let users = a.create_customers(60).await;
    for u in &users {
        assert_eq!(join(&a, sale, u).await.0, 201);
    }
    // A admits from the start (it holds the lease); B waits behind it.
    until(
        &a,
        "a lease holder",
        "select exists (select 1 from lease where name = 'queue_admitter')",
    )
    .await;
    let b = a.another_instance().await;
    start_in(&a, sale, 1).await;
    until(
        &a,
        "admission under way",
        &format!("select admitted_through >= 3 from sale_queue where sale_id = {sale}"),
    )
    .await;
    let holder: uuid::Uuid =
        sqlx::query_scalar("select holder from lease where name = 'queue_admitter'")
            .fetch_one(&a.pool)
            .await
            .expect("holder");
    let pool = a.fresh_pool().await;
    a.stop().await;
    let at_stop: i64 = sqlx::query_scalar(&format!(
        "select admitted_through::bigint from sale_queue where sale_id = {sale}"
    ))
    .fetch_one(&pool)
    .await
    .expect("through");
    // B takes the lease once it runs out and goes on admitting.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (now_holder, through): (uuid::Uuid, i64) = sqlx::query_as(&format!(
            "select (select holder from lease where name = 'queue_admitter'),
                    (select admitted_through::bigint from sale_queue where sale_id = {sale})"
        ))
        .fetch_one(&pool)
        .await
        .expect("read");
        if now_holder != holder && through > at_stop + 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no takeover: holder {now_holder}, through {through}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And B's admissions are ones its shoppers can buy on.
    let admitted: i64 = sqlx::query_scalar(&format!(
        "select user_id from queue_ticket where sale_id = {sale} and position = {}",
        at_stop + 1
    ))
    .fetch_one(&pool)
    .await
    .expect("admitted");
    let shopper = users.iter().find(|u| u.id == admitted).expect("user");
    b.buy(sale, shopper, 1).await;
    b.stop().await;
}

#[tokio::test]
async fn admission_settings_are_validated_and_fixed_at_the_start() {
    let app = spawn_app().await;
    let product = app.create_product(2500).await;
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await + chrono::Duration::seconds(3600);
    for (field, value) in [
        ("admit_per_sec", json!(0)),
        ("admission_secs", json!(5)),
        ("admit_per_sec", json!("fast")),
        ("waiting_room", json!(1)),
    ] {
        let mut sale = json!({"product_id": product, "starts_at": starts,
                              "ends_at": starts + chrono::Duration::seconds(3600), "stock": 5});
        sale[field] = value;
        let resp = app.post("/api/v1/sales", Some(&admin.token), &sale).await;
        assert_error(resp, 422, "validation_failed").await;
    }
    assert_eq!(app.scalar_i64("select count(*) from sale").await, 0);

    let sale = room_sale(&app, -60, 5, 100, 120).await;
    let path = format!("/api/v1/sales/{sale}");
    let resp = app
        .patch(&path, Some(&admin.token), &json!({"waiting_room": false}))
        .await;
    assert_error(resp, 409, "sale_already_started").await;
    // The rate may be turned down during the sale.
    let (status, v) = body(
        app.patch(&path, Some(&admin.token), &json!({"admit_per_sec": 7}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["admit_per_sec"].as_i64(), v["waiting_room"].as_bool()),
        (Some(7), Some(true))
    );
}
