//! The waiting room: joining a sale's line, the draw of the pre-queue's
//! places, and purchases that need an admitted ticket. Real requests, then
//! the database is checked.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinSet;

use flashsale::auth::Role;
use flashsale::config::PurchaseMode;

use crate::helpers::{assert_error, body, spawn_app, spawn_app_with, TestApp, TestUser};

/// A waiting-room sale of `stock` (confirmed at once, no hold) whose window
/// starts `start_in` seconds from the database's now and lasts an hour.
pub(crate) async fn room_sale(
    app: &TestApp,
    start_in: i64,
    stock: i64,
    admit_per_sec: i64,
    admission_secs: i64,
) -> i64 {
    let product = app.create_product(2500).await;
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await + chrono::Duration::seconds(start_in);
    let (status, v) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({"product_id": product, "starts_at": starts,
                    "ends_at": starts + chrono::Duration::seconds(3600),
                    "stock": stock, "price_cents": 1000, "hold_secs": 0,
                    "waiting_room": true, "admit_per_sec": admit_per_sec,
                    "admission_secs": admission_secs}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["waiting_room"], true, "{v}");
    v["id"].as_i64().expect("sale id")
}

/// `POST /sales/{sale}/queue` as `user`: status and ticket.
pub(crate) async fn join(app: &TestApp, sale: i64, user: &TestUser) -> (u16, Value) {
    let path = format!("/api/v1/sales/{sale}/queue");
    body(app.post(&path, Some(&user.token), &json!({})).await).await
}

/// `GET /sales/{sale}/queue` as `user`: the ticket, which must exist.
pub(crate) async fn ticket(app: &TestApp, sale: i64, user: &TestUser) -> Value {
    let path = format!("/api/v1/sales/{sale}/queue");
    let (status, v) = body(app.get(&path, Some(&user.token)).await).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Moves an upcoming sale's start to `secs` from the database's now.
pub(crate) async fn start_in(app: &TestApp, sale: i64, secs: i64) {
    let admin = app.create_user(Role::Admin).await;
    let starts = app.db_now().await + chrono::Duration::seconds(secs);
    let (status, v) = body(
        app.patch(
            &format!("/api/v1/sales/{sale}"),
            Some(&admin.token),
            &json!({"starts_at": starts}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

/// Waits (at most a minute) until `check` holds of the database.
pub(crate) async fn until(app: &TestApp, what: &str, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok: bool = sqlx::query_scalar(sql)
            .fetch_one(&app.pool)
            .await
            .expect(sql);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "waited a minute for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` shoppers who joined the pre-queue of the upcoming `sale`, which then
/// starts a second later; returns once `through` places are admitted.
pub(crate) async fn line_up(app: &TestApp, sale: i64, n: usize, through: i64) -> Vec<TestUser> {
    let users = app.create_customers(n).await;
    for u in &users {
        assert_eq!(join(app, sale, u).await.0, 201);
    }
    start_in(app, sale, 1).await;
    let sql =
        format!("select admitted_through >= {through} from sale_queue where sale_id = {sale}");
    until(app, &format!("{through} places admitted"), &sql).await;
    users
}

/// The shopper of `users` at `position` in the sale's line.
pub(crate) async fn at_place<'a>(
    app: &TestApp,
    sale: i64,
    users: &'a [TestUser],
    position: i32,
) -> &'a TestUser {
    let id: i64 =
        sqlx::query_scalar("select user_id from queue_ticket where sale_id = $1 and position = $2")
            .bind(sale)
            .bind(position)
            .fetch_one(&app.pool)
            .await
            .expect("a ticket at that place");
    users.iter().find(|u| u.id == id).expect("one of the users")
}

/// Spearman's rank correlation of two columns of distinct values.
pub(crate) fn spearman(pairs: &[(i64, i64)]) -> f64 {
    fn ranks(v: Vec<i64>) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by_key(|&i| v[i]);
        let mut r = vec![0.0; v.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }
    let n = pairs.len() as f64;
    let a = ranks(pairs.iter().map(|p| p.0).collect());
    let b = ranks(pairs.iter().map(|p| p.1).collect());
    let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn joining_is_idempotent_and_only_where_there_is_a_line() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;
    let other = app.create_user(Role::Customer).await;
    let plain = app.active_sale(5).await;
    let (status, v) = join(&app, plain, &user).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("no_waiting_room")),
        "{v}"
    );

    let sale = room_sale(&app, 3600, 5, 100, 120).await;
    let (status, first) = join(&app, sale, &user).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["state"], "waiting", "{first}");
    assert_eq!(
        first["position"],
        Value::Null,
        "the pre-queue has no places: {first}"
    );
    assert_eq!(first["admitted_through"], 0, "{first}");
    let (status, again) = join(&app, sale, &user).await;
    assert_eq!(status, 200, "joining again: {again}");
    assert_eq!(again["state"], "waiting");
    assert_eq!(ticket(&app, sale, &user).await["sale_id"], sale);

    let path = format!("/api/v1/sales/{sale}/queue");
    assert_error(app.get(&path, Some(&other.token)).await, 404, "not_found").await;
    assert_error(app.post(&path, None, &json!({})).await, 401, "unauthorized").await;
    assert_error(
        app.post("/api/v1/sales/999999/queue", Some(&user.token), &json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    // Its status says it has a line and where admission stands.
    let (_, status_v) = body(app.get(&format!("/api/v1/sales/{sale}/status"), None).await).await;
    assert_eq!(status_v["admitted_through"], 0, "{status_v}");
    assert_eq!(status_v["admit_per_sec"], 100, "{status_v}");
    let (_, plain_v) = body(
        app.get(&format!("/api/v1/sales/{plain}/status"), None)
            .await,
    )
    .await;
    assert_eq!(plain_v["admitted_through"], Value::Null, "{plain_v}");

    let ended = room_sale(&app, -7200, 5, 100, 120).await;
    let (status, v) = join(&app, ended, &user).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("sale_ended")),
        "{v}"
    );
    let tickets = app.scalar_i64("select count(*) from queue_ticket").await;
    assert_eq!(tickets, 1, "one ticket, whatever the retries and refusals");
}

#[tokio::test]
async fn the_draw_places_everyone_at_random_and_late_joiners_behind_in_order() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 3600, 10, 1000, 120).await;
    let shoppers = app.create_customers(3000).await;
    // The pre-queue, 32 joins at a time.
    let mut set = JoinSet::new();
    for chunk in shoppers.chunks(shoppers.len() / 32) {
        let (app_client, url) = (
            app.client.clone(),
            app.url(&format!("/api/v1/sales/{sale}/queue")),
        );
        let chunk = chunk.to_vec();
        set.spawn(async move {
            for u in chunk {
                let r = app_client
                    .post(&url)
                    .bearer_auth(&u.token)
                    .send()
                    .await
                    .expect("join");
                assert_eq!(r.status().as_u16(), 201);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("joins");
    }
    start_in(&app, sale, 1).await;
    until(
        &app,
        "the draw",
        &format!("select drawn_at is not null from sale_queue where sale_id = {sale}"),
    )
    .await;
    // Three late joiners, one after another.
    let late = app.create_customers(3).await;
    let mut late_places = Vec::new();
    for u in &late {
        let (status, t) = join(&app, sale, u).await;
        assert_eq!(status, 201, "{t}");
        late_places.push(t["position"].as_i64().expect("a late joiner has a place"));
    }
    assert_eq!(
        late_places,
        vec![3001, 3002, 3003],
        "behind the pre-queue, in order"
    );

    let rows: Vec<(i64, i64, i32)> = sqlx::query_as(
        "select arrival, user_id, position from queue_ticket
          where sale_id = $1 and position <= 3000 order by position",
    )
    .bind(sale)
    .fetch_all(&app.pool)
    .await
    .expect("tickets");
    let places: Vec<i64> = rows.iter().map(|r| i64::from(r.2)).collect();
    assert_eq!(places, (1..=3000).collect::<Vec<_>>(), "every place once");
    // With 3,000 tickets chance keeps |rho| near 0.018 (one standard
    // deviation); places given by join order or by account would make it 1.
    let by_arrival: Vec<(i64, i64)> = rows.iter().map(|r| (r.0, i64::from(r.2))).collect();
    let by_user: Vec<(i64, i64)> = rows.iter().map(|r| (r.1, i64::from(r.2))).collect();
    let (rho_arrival, rho_user) = (spearman(&by_arrival), spearman(&by_user));
    assert!(
        rho_arrival.abs() < 0.1,
        "join order and place: rho = {rho_arrival}"
    );
    assert!(rho_user.abs() < 0.1, "account and place: rho = {rho_user}");
    // A shopper's ticket tells its place from the draw on.
    let t = ticket(&app, sale, &shoppers[0]).await;
    assert!(
        t["position"]
            .as_i64()
            .is_some_and(|p| (1..=3000).contains(&p)),
        "{t}"
    );
}

#[tokio::test]
async fn purchases_need_an_admitted_unused_ticket_in_both_engines() {
    for mode in [PurchaseMode::Combined, PurchaseMode::PerPurchase] {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        // Two places a second: the first is admitted half a second after the
        // start, the fortieth twenty seconds later.
        let sale = room_sale(&app, 3600, 5, 2, 120).await;
        let users = line_up(&app, sale, 40, 1).await;
        let first = at_place(&app, sale, &users, 1).await;
        let last = at_place(&app, sale, &users, 40).await;
        let stranger = app.create_user(Role::Customer).await;
        assert_error(
            app.purchase(sale, &stranger, None).await,
            403,
            "not_admitted",
        )
        .await;
        assert_error(app.purchase(sale, last, None).await, 403, "not_admitted").await;
        let order = app.buy(sale, first, 1).await;
        let again = assert_error(
            app.purchase(sale, first, None).await,
            409,
            "already_purchased",
        )
        .await;
        assert_eq!(
            again["error"]["details"]["order_id"], order["id"],
            "{again}"
        );
        let t = ticket(&app, sale, first).await;
        assert_eq!(t["state"], "used", "{t}");
        let (used, order_id): (bool, Option<i64>) = sqlx::query_as(
            "select used_at is not null, order_id from queue_ticket where sale_id = $1 and user_id = $2",
        )
        .bind(sale)
        .bind(first.id)
        .fetch_one(&app.pool)
        .await
        .expect("ticket");
        assert!(used);
        assert_eq!(order_id, order["id"].as_i64());
        // Every order of the sale is on an admitted ticket, made before it lapsed.
        let unadmitted = app
            .scalar_i64(&format!(
                "select count(*) from purchase_order o where o.sale_id = {sale} and not exists (
                   select 1 from queue_ticket t where t.sale_id = o.sale_id and t.user_id = o.user_id
                      and t.order_id = o.id and o.created_at < t.admitted_until)"
            ))
            .await;
        assert_eq!(unadmitted, 0, "{mode:?}");
        assert_eq!(
            app.scalar_i64(&format!(
                "select count(*) from purchase_order where sale_id = {sale}"
            ))
            .await,
            1
        );
    }
}

#[tokio::test]
async fn the_database_refuses_what_another_instance_has_not_heard_of() {
    // Shoppers join through one instance and buy through another, whose
    // board has never seen their tickets: the purchase transaction decides.
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let sale = room_sale(&a, 3600, 5, 1, 120).await;
    let users = line_up(&a, sale, 30, 1).await;
    // At one a second, place 30 is far from admitted: refused by the database.
    let back = at_place(&a, sale, &users, 30).await;
    assert_error(b.purchase(sale, back, None).await, 403, "not_admitted").await;
    // Place 1 is admitted: B sells it whatever it has heard.
    let front = at_place(&a, sale, &users, 1).await;
    b.buy(sale, front, 1).await;
    let orders = a
        .scalar_i64(&format!(
            "select count(*) from purchase_order where sale_id = {sale}"
        ))
        .await;
    assert_eq!(orders, 1);
    b.stop().await;
}
