//! The combined engine: per-buyer decisions inside one batch, failed batches,
//! killed connections, bounded queues, several instances on one database, and
//! the SSE stream.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale::auth::Role;
use flashsale::error::ApiError;
use flashsale::live::Board;
use flashsale::purchase::serve_batch;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp, TestUser};

fn code(r: &Result<flashsale::db::orders::Order, ApiError>) -> &'static str {
    match r {
        Ok(_) => "created",
        Err(e) => e.code(),
    }
}

async fn counters(app: &TestApp, sale: i64) -> (i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from purchase_order where sale_id = s.id), s.remaining, p.sell_count
           from sale s join product p on p.id = s.product_id where s.id = $1",
    )
    .bind(sale)
    .fetch_one(&app.pool)
    .await
    .expect("counters")
}

#[tokio::test]
async fn one_batch_decides_each_buyer_on_their_own_in_arrival_order() {
    // Arrange: 2 units, at most 2 per buyer.
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 2, 2).await["id"]
        .as_i64()
        .unwrap();
    let u = app.create_customers(4).await;
    let board = Board::new(app.pool.clone().into());
    let live = board.get(sale).await.unwrap();

    // Act: u0 twice in the same batch, u1 over the limit, then u2 and u3 race
    // for what is left.
    let answers = serve_batch(
        &app.pool.clone().into(),
        &live,
        &[
            (u[0].id, 1),
            (u[0].id, 1),
            (u[1].id, 3),
            (u[2].id, 1),
            (u[3].id, 1),
        ],
    )
    .await;

    // Assert
    let codes: Vec<_> = answers.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "created",
            "already_purchased",
            "quantity_exceeds_limit",
            "created",
            "sold_out"
        ]
    );
    assert_eq!(answers[0].as_ref().unwrap().user_id, u[0].id);
    assert_eq!(answers[3].as_ref().unwrap().user_id, u[2].id);
    assert_eq!(counters(&app, sale).await, (2, 0, 2));
    assert_eq!(
        live.remaining(),
        0,
        "the board learns the stock read under the lock"
    );
}

#[tokio::test]
async fn the_last_units_are_split_across_a_batch_by_arrival() {
    // Arrange: 3 units, up to 2 each.
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 3, 2).await["id"]
        .as_i64()
        .unwrap();
    let u = app.create_customers(3).await;
    let live = Board::new(app.pool.clone().into()).get(sale).await.unwrap();

    // Act: 2 + 2 + 1 asked for 3 units.
    let answers = serve_batch(
        &app.pool.clone().into(),
        &live,
        &[(u[0].id, 2), (u[1].id, 2), (u[2].id, 1)],
    )
    .await;

    // Assert: the second buyer is told what is left; the third still fits.
    assert_eq!(
        answers.iter().map(code).collect::<Vec<_>>(),
        ["created", "sold_out", "created"]
    );
    let Err(e) = &answers[1] else { unreachable!() };
    assert_eq!(e.to_string(), "only 1 left");
    assert_eq!(answers[0].as_ref().unwrap().quantity, 2);
    let (orders, remaining, sell_count) = counters(&app, sale).await;
    assert_eq!((orders, remaining, sell_count), (2, 0, 3));
}

#[tokio::test]
async fn a_buyer_with_an_order_in_the_table_is_refused_in_a_batch() {
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 5, 1).await["id"]
        .as_i64()
        .unwrap();
    let u = app.create_customers(2).await;
    let (status, _) = body(
        app.post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&u[0].token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    // A board of another instance, which has not seen that purchase.
    let live = Board::new(app.pool.clone().into()).get(sale).await.unwrap();

    let answers = serve_batch(
        &app.pool.clone().into(),
        &live,
        &[(u[0].id, 1), (u[1].id, 1)],
    )
    .await;

    assert_eq!(
        answers.iter().map(code).collect::<Vec<_>>(),
        ["already_purchased", "created"]
    );
    assert_eq!(counters(&app, sale).await, (2, 3, 2));
    assert!(live.is_known_buyer(u[0].id), "repeat buyers are remembered");
}

/// A holder the batch could not know of takes no unit from the others: with
/// stock for two, a batch of the holder and three buyers sells to the first
/// two buyers and refuses only the third.
#[tokio::test]
async fn a_holder_in_a_batch_that_sells_out_takes_no_unit_from_the_others() {
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 3, 1).await["id"]
        .as_i64()
        .unwrap();
    let u = app.create_customers(4).await;
    app.buy(sale, &u[0], 1).await;
    // A board of another instance, which has not seen that purchase.
    let live = Board::new(app.pool.clone().into()).get(sale).await.unwrap();

    let batch: Vec<(i64, i32)> = u.iter().map(|x| (x.id, 1)).collect();
    let answers = serve_batch(&app.pool.clone().into(), &live, &batch).await;

    assert_eq!(
        answers.iter().map(code).collect::<Vec<_>>(),
        ["already_purchased", "created", "created", "sold_out"]
    );
    assert_eq!(counters(&app, sale).await, (3, 0, 3));
}

#[tokio::test]
async fn a_failed_batch_writes_nothing_and_answers_busy_then_a_retry_succeeds() {
    // Arrange: a trigger that fails every order insert of one buyer makes the
    // whole batch's statement fail.
    let app = spawn_app().await;
    let sale = app.create_sale(-60, 3600, 5, 1).await["id"]
        .as_i64()
        .unwrap();
    let u = app.create_customers(3).await;
    sqlx::raw_sql(&format!(
        "create function fail_order() returns trigger language plpgsql as $$
         begin if new.user_id = {} then raise exception 'injected failure'; end if; return new; end $$;
         create trigger fail_order before insert on purchase_order for each row execute function fail_order();",
        u[1].id
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    let live = Board::new(app.pool.clone().into()).get(sale).await.unwrap();
    let batch = [(u[0].id, 1), (u[1].id, 1), (u[2].id, 1)];

    // Act
    let answers = serve_batch(&app.pool.clone().into(), &live, &batch).await;

    // Assert: every buyer hears busy, nothing was written.
    assert_eq!(
        answers.iter().map(code).collect::<Vec<_>>(),
        ["busy", "busy", "busy"]
    );
    assert_eq!(counters(&app, sale).await, (0, 5, 0));
    assert!(!live.is_known_buyer(u[0].id));

    // Act again once the fault is gone: the same buyers are served.
    sqlx::raw_sql("drop trigger fail_order on purchase_order")
        .execute(&app.pool)
        .await
        .unwrap();
    let answers = serve_batch(&app.pool.clone().into(), &live, &batch).await;
    assert_eq!(
        answers.iter().map(code).collect::<Vec<_>>(),
        ["created", "created", "created"]
    );
    assert_eq!(counters(&app, sale).await, (3, 2, 3));
}

#[tokio::test]
async fn a_busy_answer_over_http_carries_retry_after() {
    // A sale whose orders always fail: the batch answers busy after retries.
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let user = app.create_user(Role::Customer).await;
    sqlx::raw_sql(
        "create function fail_order() returns trigger language plpgsql as $$
         begin raise exception 'injected failure'; end $$;
         create trigger fail_order before insert on purchase_order for each row execute function fail_order();",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let resp = app
        .post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&user.token),
            &json!({}),
        )
        .await;
    let retry = resp.headers().get("retry-after").cloned();
    assert_error(resp, 503, "busy").await;
    assert_eq!(retry.unwrap(), "1");
    assert_eq!(counters(&app, sale).await, (0, 5, 0));
}

/// Fires one purchase per user at `app`, all at once; returns (user, status, body).
async fn storm(app: &TestApp, sale: i64, users: &[TestUser]) -> Vec<(i64, u16, Value)> {
    let mut tasks = JoinSet::new();
    for u in users {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/sales/{sale}/purchase")))
            .bearer_auth(&u.token)
            .json(&json!({"quantity": 1}));
        let id = u.id;
        tasks.spawn(async move {
            let (s, v) = body(req.send().await.expect("send")).await;
            (id, s, v)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_mid_batch_lose_no_order_and_invent_none() {
    // Arrange
    let app = spawn_app().await;
    let stock = 150;
    let sale = app.active_sale(stock).await;
    let users = app.create_customers(300).await;
    let killer_pool = app.fresh_pool().await;
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let db = app.db_name.clone();
        tokio::spawn(async move {
            let mut kills = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // Every server connection (the killer's own pool has no
                // application name set by the server).
                let n: i64 = sqlx::query_scalar(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity
                      where datname = $1 and application_name = 'flashsale' and pid <> pg_backend_pid()",
                )
                .bind(&db)
                .fetch_one(&killer_pool)
                .await
                .unwrap_or(0);
                kills += n;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            kills
        })
    };

    // Act
    let answers = storm(&app, sale, &users).await;
    stop.store(true, Ordering::Relaxed);
    let kills = killer.await.unwrap();
    eprintln!("terminated {kills} server connections during the storm");

    // Assert: only documented answers.
    for (_, s, v) in &answers {
        assert!(
            *s == 201
                || (*s == 409 && v["error"]["code"] == "sold_out")
                || (*s == 503 && v["error"]["code"] == "busy"),
            "{s} {v}"
        );
    }
    assert!(kills > 0, "the fault was really injected");
    let reader = app.fresh_pool().await;
    let (orders, remaining, sell_count): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from purchase_order where sale_id = s.id), s.remaining, p.sell_count
           from sale s join product p on p.id = s.product_id where s.id = $1",
    )
    .bind(sale)
    .fetch_one(&reader)
    .await
    .unwrap();
    assert_eq!(orders, stock - remaining, "orders and stock agree");
    assert_eq!(sell_count, orders, "sell_count and orders agree");
    let rows: HashSet<i64> =
        sqlx::query_scalar("select user_id from purchase_order where sale_id = $1")
            .bind(sale)
            .fetch_all(&reader)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let created: HashSet<i64> = answers.iter().filter(|a| a.1 == 201).map(|a| a.0).collect();
    let busy: HashSet<i64> = answers.iter().filter(|a| a.1 == 503).map(|a| a.0).collect();
    assert!(created.is_subset(&rows), "every 201 is an order");
    let unexplained: Vec<_> = rows
        .difference(&created)
        .filter(|u| !busy.contains(u))
        .collect();
    assert!(
        unexplained.is_empty(),
        "every order was answered 201 (or busy): {unexplained:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let app = spawn_app_with(|s| {
        s.purchase.queue_limit = 1;
        s.purchase.max_batch = 1;
    })
    .await;
    let sale = app.active_sale(1000).await;
    let users = app.create_customers(200).await;

    let answers = storm(&app, sale, &users).await;

    let busy = answers.iter().filter(|a| a.1 == 503).count();
    let created = answers.iter().filter(|a| a.1 == 201).count();
    assert!(busy > 0, "some buyers found the queue full");
    assert_eq!(busy + created, answers.len(), "only created or busy");
    assert!(answers
        .iter()
        .filter(|a| a.1 == 503)
        .all(|a| a.2["error"]["code"] == "busy"));
    assert_eq!(
        counters(&app, sale).await,
        (created as i64, 1000 - created as i64, created as i64)
    );
}

/// Polls `f` until it holds or two seconds pass (announcements between
/// instances take a few milliseconds).
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(app: &TestApp, sale: i64) -> Value {
    body(app.get(&format!("/api/v1/sales/{sale}/status"), None).await)
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_sell_exactly_the_stock() {
    // Arrange
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let c = a.another_instance().await;
    let stock = 60;
    let sale = a.active_sale(stock).await;
    let users = a.create_customers(600).await;
    // Every instance has seen the sale before the storm.
    for app in [&a, &b, &c] {
        assert_eq!(status(app, sale).await["remaining"], stock);
    }

    // Act: a third of the buyers on each instance, all at once.
    let (x, y, z) = tokio::join!(
        storm(&a, sale, &users[..200]),
        storm(&b, sale, &users[200..400]),
        storm(&c, sale, &users[400..])
    );
    let answers: Vec<_> = x.into_iter().chain(y).chain(z).collect();

    // Assert
    let created: HashSet<i64> = answers.iter().filter(|r| r.1 == 201).map(|r| r.0).collect();
    assert_eq!(created.len() as i64, stock);
    assert!(answers
        .iter()
        .all(|r| r.1 == 201 || r.2["error"]["code"] == "sold_out"));
    assert_eq!(counters(&a, sale).await, (stock, 0, stock));
    let rows: HashSet<i64> =
        sqlx::query_scalar("select user_id from purchase_order where sale_id = $1")
            .bind(sale)
            .fetch_all(&a.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(rows, created, "the orders are exactly the 201s");
    // Every instance knows the sale is sold out.
    for app in [&a, &b, &c] {
        assert!(eventually(|| async { status(app, sale).await["state"] == "sold_out" }).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_made_on_one_instance_reach_the_others() {
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let sale = a.active_sale(10).await;
    let admin = a.create_user(Role::Admin).await;
    let buyer = a.create_user(Role::Customer).await;
    assert_eq!(status(&b, sale).await["state"], "active");

    // A purchase on a moves b's remaining stock.
    let (s, _) = body(
        a.post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&buyer.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    assert!(eventually(|| async { status(&b, sale).await["remaining"] == 9 }).await);

    // A cancellation on a is enforced by b.
    let (s, _) = body(
        a.patch(
            &format!("/api/v1/sales/{sale}"),
            Some(&admin.token),
            &json!({"cancelled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert!(eventually(|| async { status(&b, sale).await["state"] == "cancelled" }).await);
    let other = a.create_user(Role::Customer).await;
    assert_error(
        b.post(
            &format!("/api/v1/sales/{sale}/purchase"),
            Some(&other.token),
            &json!({}),
        )
        .await,
        409,
        "sale_cancelled",
    )
    .await;

    // A logout on a revokes the token on b.
    let (s, _) = body(b.get("/api/v1/me", Some(&buyer.token)).await).await;
    assert_eq!(s, 200, "b has the user cached");
    let (s, _) = body(
        a.post("/api/v1/auth/logout", Some(&buyer.token), &json!({}))
            .await,
    )
    .await;
    assert_eq!(s, 204);
    assert!(
        eventually(|| async {
            b.get("/api/v1/me", Some(&buyer.token))
                .await
                .status()
                .as_u16()
                == 401
        })
        .await
    );

    // Disabling on a is enforced by b.
    let victim = a.create_user(Role::Customer).await;
    assert_eq!(
        b.get("/api/v1/me", Some(&victim.token))
            .await
            .status()
            .as_u16(),
        200
    );
    let (s, _) = body(
        a.patch(
            &format!("/api/v1/admin/users/{}", victim.id),
            Some(&admin.token),
            &json!({"disabled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        eventually(|| async {
            b.get("/api/v1/me", Some(&victim.token))
                .await
                .status()
                .as_u16()
                == 403
        })
        .await
    );
}

/// Reads SSE events from a response until one satisfies `pred` or 5 s pass.
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).expect("event data is JSON");
                if pred(&v) {
                    return Some(v);
                }
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .ok()?
            .ok()??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_pushes_stock_changes() {
    let app = spawn_app().await;
    let sale = app.active_sale(2).await;
    let buyers = app.create_customers(2).await;
    let mut resp = app.get(&format!("/api/v1/sales/{sale}/events"), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();

    let first = next_event(&mut resp, &mut buf, |_| true)
        .await
        .expect("an initial status");
    assert_eq!(first["state"], "active");
    assert_eq!(first["remaining"], 2);

    for b in &buyers {
        let (s, _) = body(
            app.post(
                &format!("/api/v1/sales/{sale}/purchase"),
                Some(&b.token),
                &json!({}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 201);
    }
    let last = next_event(&mut resp, &mut buf, |v| v["state"] == "sold_out")
        .await
        .expect("the sold-out status is pushed");
    assert_eq!(last["remaining"], 0);
}

#[tokio::test]
async fn the_event_stream_of_an_unknown_sale_is_not_found() {
    let app = spawn_app().await;
    assert_error(
        app.get("/api/v1/sales/424242/events", None).await,
        404,
        "not_found",
    )
    .await;
}

async fn refuses_disabled_and_unknown_accounts(mode: flashsale::config::PurchaseMode) {
    let app = spawn_app_with(|s| s.purchase.mode = mode).await;
    let sale = app.active_sale(5).await;
    let admin = app.create_user(Role::Admin).await;
    let victim = app.create_user(Role::Customer).await;
    let (s, _) = body(
        app.patch(
            &format!("/api/v1/admin/users/{}", victim.id),
            Some(&admin.token),
            &json!({"disabled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let ghost = app.jwt.issue(987_654_321, Role::Customer).unwrap().0;
    let url = format!("/api/v1/sales/{sale}/purchase");

    assert_error(
        app.post(&url, Some(&victim.token), &json!({})).await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        app.post(&url, Some(&ghost), &json!({})).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(counters(&app, sale).await, (0, 5, 0), "nothing written");
}

#[tokio::test]
async fn a_disabled_or_unknown_account_cannot_buy() {
    refuses_disabled_and_unknown_accounts(flashsale::config::PurchaseMode::Combined).await;
    refuses_disabled_and_unknown_accounts(flashsale::config::PurchaseMode::PerPurchase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_server_ends_open_event_streams_at_once() {
    // Arrange: a shopper's open sale page, i.e. a stream that never ends.
    let app = spawn_app().await;
    let sale = app.active_sale(5).await;
    let mut resp = app.get(&format!("/api/v1/sales/{sale}/events"), None).await;
    let mut buf = String::new();
    next_event(&mut resp, &mut buf, |_| true)
        .await
        .expect("an initial status");

    // Act
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;

    // Assert: the graceful stop did not wait out its 30 s timeout for the
    // stream, and the stream is over.
    assert!(
        stopped.is_ok(),
        "stop took more than 10 s with an event stream open"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let rest = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the stream ends rather than hangs");
    assert!(
        matches!(rest, Ok(None) | Err(_)),
        "no more events after the stop: {rest:?}"
    );
}

/// Once a sale is sold out, a buyer who holds an order still hears
/// `already_purchased` (as from the database), on an instance that never saw
/// them buy too; everyone else hears `sold_out`.
#[tokio::test]
async fn after_a_sell_out_holders_hear_already_purchased_on_every_instance() {
    let app = spawn_app().await;
    let sale = app.active_sale(2).await;
    let users = app.create_customers(3).await;
    app.buy(sale, &users[0], 1).await;
    app.buy(sale, &users[1], 1).await;

    let other = app.another_instance().await;
    for instance in [&app, &other] {
        // Several rounds: the first answers may come from the database, the
        // later ones from memory; both must say the same.
        for _ in 0..5 {
            for holder in &users[..2] {
                assert_error(
                    instance.purchase(sale, holder, Some(1)).await,
                    409,
                    "already_purchased",
                )
                .await;
            }
            assert_error(
                instance.purchase(sale, &users[2], Some(1)).await,
                409,
                "sold_out",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        2
    );
}
