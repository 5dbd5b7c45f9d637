//! The shop's pages in a real browser: headless Chromium, driven by the
//! playwright-core suite in `tests/browser/shop.mjs` (the cart's pages by
//! `cart.mjs`, from `browser_cart.rs`), against this test's own server and
//! database. The suite clicks through the pages; this test makes
//! the users and sales it needs beforehand and checks the database after.
//!
//! Needs Node.js with npm and Debian's `chromium` (`CHROMIUM` may name another
//! binary). Missing either is a failure that says what to install, not a skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use flashsale::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{body, spawn_app, TestApp, TestUser, PASSWORD};

/// How far ahead the countdown sale starts once the shopper's page shows it
/// (the suite reschedules it then): the wait is real but brief.
const START_SECS: i64 = 10;

/// How long the paying steps' sales hold a win for payment.
const HOLD_SECS: i64 = 600;

/// The hold the expiry step waits out: real, and short.
const SHORT_HOLD_SECS: i64 = 3;

/// One browser suite at a time: each drives a Chromium that wants every
/// core of the machine.
static ONE_SUITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "the browser tests need Chromium at {path}: install Debian's `chromium` and \
         `chromium-driver` (apt-get install chromium chromium-driver, as `.ci/run` does) \
         or set CHROMIUM to a Chromium binary"
    );
    path
}

async fn tool_version(tool: &str) -> Option<String> {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Node and npm present, and the suite's packages installed (`npm ci`).
async fn prepare_node() {
    let node = tool_version("node").await;
    let major = node.as_deref().and_then(|v| {
        v.trim_start_matches('v')
            .split('.')
            .next()?
            .parse::<u32>()
            .ok()
    });
    assert!(
        major.is_some_and(|m| m >= 20),
        "the browser tests need Node.js 20 or newer on PATH (playwright-core requires it); found {node:?}"
    );
    assert!(
        tool_version("npm").await.is_some(),
        "the browser tests need `npm` on PATH: install it with Node.js"
    );
    let dir = suite_dir();
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    let status = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .await
        .expect("run npm ci");
    assert!(
        status.success(),
        "`npm ci` in {} failed: the browser tests need playwright-core from the npm registry",
        dir.display()
    );
}

/// Where the suites leave their screenshots.
pub(crate) fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

/// Runs the suite `script` of `tests/browser` against `app` with `vars` in its
/// environment (besides the server's address, the password, the screenshot
/// directory and Chromium), one suite at a time, and returns its RESULT.
pub(crate) async fn run_suite(
    script: &str,
    vars: &[(&str, String)],
    app: &TestApp,
    shots: &Path,
) -> Value {
    let chromium = chromium();
    // Inside the lock: two suites must not both run `npm ci` in one place.
    let _alone = ONE_SUITE.lock().await;
    prepare_node().await;
    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(suite_dir())
        .env("BASE_URL", &app.address)
        .env("PASSWORD", PASSWORD)
        .env("SCREENSHOT_DIR", shots)
        .env("CHROMIUM", &chromium)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser suite finishes within 5 minutes")
        .expect("start node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "browser suite {script} took {:.1} s\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "the browser suite {script} failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("the suite prints its RESULT line")
}

/// A product with a readable name, listed by `seller`.
async fn product(app: &TestApp, seller: &TestUser, name: &str) -> i64 {
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({
                "name": name,
                "description": "A lighthouse keeper and a runaway apprentice map the storms.",
                "price_cents": 2490
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().expect("product id")
}

/// A sale of `product_id`, open now for an hour, whose wins are held for
/// `hold_secs` until paid.
async fn hold_sale_of(
    app: &TestApp,
    admin: &TestUser,
    product_id: i64,
    stock: i64,
    hold_secs: i64,
) -> i64 {
    let starts = app.db_now().await - chrono::Duration::seconds(5);
    let (status, v) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({
                "product_id": product_id, "starts_at": starts,
                "ends_at": starts + chrono::Duration::seconds(3600),
                "stock": stock, "per_user_limit": 1, "hold_secs": hold_secs
            }),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, v["hold_secs"].as_i64()),
        (201, Some(hold_secs)),
        "{v}"
    );
    id(&v)
}

/// The status of the order numbered `number`.
async fn status_of(app: &TestApp, number: &Value) -> String {
    sqlx::query_scalar("select status from purchase_order where number = $1")
        .bind(number.as_str().expect("an order number"))
        .fetch_one(&app.pool)
        .await
        .expect("the order")
}

fn id(sale: &Value) -> i64 {
    sale["id"].as_i64().expect("sale id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_admins_and_sellers_use_the_pages_in_a_real_browser() {
    // Arrange: a server with users, a product and three sales.
    let app = spawn_app().await;
    let user1 = app.create_user(Role::Customer).await;
    let user2 = app.create_user(Role::Customer).await;
    let admin = app.create_user(Role::Admin).await;
    let seller = app.create_user(Role::Seller).await;
    let name = "The Lantern Keeper of Brisk Harbour";
    let product_id = product(&app, &seller, name).await;
    let last = app.create_sale_of(product_id, -5, 3600, 1, 1).await;
    let spare = app.create_sale_of(product_id, 86_400, 3600, 10, 1).await;
    let new_product = format!(
        "Star Atlas {}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let new_user = format!("n{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    // An hour ahead: the suite moves its start once the page shows it.
    let soon = app.create_sale_of(product_id, 3600, 3600, 100, 1).await;
    // The paying steps: shoppers of their own, and sales that hold wins,
    // of a product the admin lists (so the seller's figures stay the above).
    // In order: the payer, the decliner, the watcher, the expirer and the
    // shopper whose hold the admin cancels.
    let mut shoppers = Vec::new();
    for _ in 0..5 {
        shoppers.push(app.create_user(Role::Customer).await);
    }
    let held_product = product(&app, &admin, "The Cartographer's Apprentice").await;
    let sale_pay = hold_sale_of(&app, &admin, held_product, 5, HOLD_SECS).await;
    let sale_decline = hold_sale_of(&app, &admin, held_product, 1, HOLD_SECS).await;
    let sale_short = hold_sale_of(&app, &admin, held_product, 2, SHORT_HOLD_SECS).await;
    let shots = screenshot_dir();

    // Act: the whole browser suite.
    let result = run_suite(
        "shop.mjs",
        &[
            ("USER1", user1.username.clone()),
            ("USER2", user2.username.clone()),
            ("ADMIN", admin.username.clone()),
            ("SELLER", seller.username.clone()),
            ("SALE_SOON", id(&soon).to_string()),
            ("SALE_LAST", id(&last).to_string()),
            ("SALE_SPARE", id(&spare).to_string()),
            ("PRODUCT_NAME", name.to_owned()),
            ("NEW_PRODUCT_NAME", new_product.clone()),
            ("NEW_USER", new_user.clone()),
            ("START_SECS", START_SECS.to_string()),
            ("PAYER", shoppers[0].username.clone()),
            ("DECLINER", shoppers[1].username.clone()),
            ("WATCHER", shoppers[2].username.clone()),
            ("EXPIRER", shoppers[3].username.clone()),
            ("CANCELEE", shoppers[4].username.clone()),
            ("SALE_PAY", sale_pay.to_string()),
            ("SALE_DECLINE", sale_decline.to_string()),
            ("SALE_SHORT", sale_short.to_string()),
            ("HOLD_SECS", HOLD_SECS.to_string()),
            ("SHORT_HOLD_SECS", SHORT_HOLD_SECS.to_string()),
        ],
        &app,
        &shots,
    )
    .await;

    // Assert: the database holds what the pages showed.
    let numbers = |user: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "select number from purchase_order where user_id = $1 order by created_at, id",
            )
            .bind(user)
            .fetch_all(&pool)
            .await
            .expect("orders")
        }
    };
    assert_eq!(
        json!(numbers(user1.id).await),
        result["user1_orders"],
        "user1's orders are exactly the two order numbers the sale page showed"
    );
    assert_eq!(
        json!(numbers(user2.id).await),
        json!([result["user2_order"]])
    );
    let sale_of = |n: &str| format!("(select sale_id from purchase_order where number = '{n}')");
    let first = result["user1_orders"][0].as_str().expect("number");
    assert_eq!(
        app.scalar_i64(&sale_of(first)).await,
        id(&soon),
        "the countdown purchase is in the countdown sale"
    );
    let remaining = |sale: i64| format!("select remaining from sale where id = {sale}");
    assert_eq!(app.scalar_i64(&remaining(id(&last))).await, 0);
    assert_eq!(app.scalar_i64(&remaining(id(&soon))).await, 98);
    let sell_count = app
        .scalar_i64(&format!(
            "select sell_count from product where id = {product_id}"
        ))
        .await;
    let units = app
        .scalar_i64(&format!(
            "select coalesce(sum(quantity), 0)::bigint from purchase_order where product_id = {product_id}"
        ))
        .await;
    assert_eq!((sell_count, units), (3, 3), "sell count equals the orders");

    let countdown_order_after_start: bool = sqlx::query_scalar(
        "select o.created_at >= s.starts_at from purchase_order o join sale s on s.id = o.sale_id
          where o.number = $1",
    )
    .bind(first)
    .fetch_one(&app.pool)
    .await
    .expect("order time");
    assert!(countdown_order_after_start);

    let new_sale = result["new_sale_id"].as_i64().expect("new sale id");
    let (product_name, starts_at, cancelled): (String, chrono::DateTime<chrono::Utc>, bool) =
        sqlx::query_as(
            "select p.name, s.starts_at, s.cancelled_at is not null
               from sale s join product p on p.id = s.product_id where s.id = $1",
        )
        .bind(new_sale)
        .fetch_one(&app.pool)
        .await
        .expect("the sale the admin scheduled");
    assert_eq!(product_name, new_product);
    assert!(!cancelled);
    let rescheduled: chrono::DateTime<chrono::Utc> = result["new_sale_starts_at"]
        .as_str()
        .expect("new start")
        .parse()
        .expect("RFC 3339");
    assert_eq!(starts_at, rescheduled, "the admin's new start was saved");
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from sale where id = {} and cancelled_at is not null",
            id(&spare)
        ))
        .await,
        1,
        "the admin cancelled the spare sale"
    );
    let role: String = sqlx::query_scalar("select role from app_user where id = $1")
        .bind(user2.id)
        .fetch_one(&app.pool)
        .await
        .expect("role");
    assert_eq!(role, "seller", "the admin made user2 a seller");
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from app_user where username = '{new_user}'"
        ))
        .await,
        1,
        "the new shopper registered"
    );

    // The paying steps: each order ended as its page said.
    for (key, status) in [
        ("paid_order", "refunded"),
        ("declined_order", "payment_failed"),
        ("watcher_order", "pending_payment"),
        ("expired_order", "expired"),
        ("cancelled_order", "cancelled"),
    ] {
        assert_eq!(status_of(&app, &result[key]).await, status, "{key}");
    }
    let payments = |number: &Value| {
        let pool = app.pool.clone();
        let number = number.as_str().expect("an order number").to_owned();
        async move {
            sqlx::query_scalar::<_, String>(
                "select p.status from payment p join purchase_order o on o.id = p.order_id
                  where o.number = $1 order by p.created_at",
            )
            .bind(number)
            .fetch_all(&pool)
            .await
            .expect("payments")
        }
    };
    assert_eq!(payments(&result["paid_order"]).await, ["refunded"]);
    assert_eq!(payments(&result["declined_order"]).await, ["failed"]);
    assert_eq!(
        app.scalar_i64(&remaining(sale_decline)).await,
        0,
        "the declined unit went to the watcher"
    );
    assert_eq!(app.scalar_i64(&remaining(sale_short)).await, 2);
    // The paid order was refunded and the hold cancelled: all 5 are back.
    assert_eq!(app.scalar_i64(&remaining(sale_pay)).await, 5);
    for page in [
        "sale-page",
        "admin-live",
        "sale-phone",
        "seller",
        "sale-hold",
        "pay-page",
        "order-paid",
        "pay-declined",
        "order-expired",
        "admin-orders",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}.png"
        );
    }
}
