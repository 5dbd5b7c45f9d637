//! A waiting-room sale in a real browser, driven by `tests/browser/queue.mjs`
//! (see `browser.rs` for what the suites need): two shoppers in one browser
//! join the pre-queue, each sees its own place and wait after the start, and
//! buys on its turn. This test makes the sale and the shoppers beforehand,
//! with four more in line through the API, and checks the database after.

use flashsale::auth::Role;

use crate::browser::{run_suite, screenshot_dir};
use crate::helpers::spawn_app;
use crate::queue::{join, room_sale};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shoppers_in_one_browser_wait_their_turn_and_buy() {
    let app = spawn_app().await;
    // One place a second, a minute to buy, ten units.
    let sale = room_sale(&app, 3600, 10, 1, 60).await;
    let a = app.create_user(Role::Customer).await;
    let b = app.create_user(Role::Customer).await;
    let admin = app.create_user(Role::Admin).await;
    for other in &app.create_customers(4).await {
        assert_eq!(join(&app, sale, other).await.0, 201);
    }
    let shots = screenshot_dir();
    let result = run_suite(
        "queue.mjs",
        &[
            ("SALE", sale.to_string()),
            ("SHOPPER_A", a.username.clone()),
            ("SHOPPER_B", b.username.clone()),
            ("ADMIN", admin.username.clone()),
        ],
        &app,
        &shots,
    )
    .await;

    // Each page showed the place the database gave its shopper, and each
    // bought once on its own admitted ticket.
    for (user, shown) in [(&a, &result["places"][0]), (&b, &result["places"][1])] {
        let (position, used, orders): (i32, bool, i64) = sqlx::query_as(
            "select t.position, t.used_at is not null,
                    (select count(*) from purchase_order o
                      where o.sale_id = t.sale_id and o.user_id = t.user_id and o.id = t.order_id
                        and o.created_at < t.admitted_until)
               from queue_ticket t where t.sale_id = $1 and t.user_id = $2",
        )
        .bind(sale)
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .expect("ticket");
        assert_eq!(shown.as_i64(), Some(i64::from(position)), "{result}");
        assert!(used, "{}'s ticket is used", user.username);
        assert_eq!(orders, 1, "{} bought once, on its turn", user.username);
    }
    let places: Vec<i32> = sqlx::query_scalar(
        "select position from queue_ticket where sale_id = $1 order by position",
    )
    .bind(sale)
    .fetch_all(&app.pool)
    .await
    .expect("places");
    assert_eq!(
        places,
        (1..=6).collect::<Vec<_>>(),
        "six places, drawn once"
    );
    for page in ["queue-pre-queue", "queue-waiting", "queue-bought"] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}.png"
        );
    }
}
