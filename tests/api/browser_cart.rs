//! The catalog and the cart in a real browser, driven by
//! `tests/browser/cart.mjs` (see `browser.rs` for what the suites need): the
//! suite searches, fills a cart, checks out and pays; then checks out a cart
//! whose last copy another shopper took meanwhile; and the seller sets a
//! book's stock on the seller page. This test makes the users and books
//! beforehand and checks the database after.

use flashsale::auth::Role;
use serde_json::{json, Value};

use crate::browser::{run_suite, screenshot_dir};
use crate::helpers::{body, spawn_app, TestApp, TestUser};

/// A book of `seller` with `stock` copies for catalog orders.
async fn book(
    app: &TestApp,
    seller: &TestUser,
    name: &str,
    description: &str,
    price_cents: i64,
    stock: i64,
) -> i64 {
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({
                "name": name, "description": description,
                "price_cents": price_cents, "stock": stock
            }),
        )
        .await,
    )
    .await;
    assert_eq!((status, v["stock"].as_i64()), (201, Some(stock)), "{v}");
    v["id"].as_i64().expect("product id")
}

/// `(product_id, quantity, unit_price_cents)` of the order numbered `number`.
async fn lines_of(app: &TestApp, number: &Value) -> Vec<(i64, i32, i64)> {
    sqlx::query_as(
        "select l.product_id, l.quantity, l.unit_price_cents
           from order_line l join purchase_order o on o.id = l.order_id
          where o.number = $1 order by l.product_id",
    )
    .bind(number.as_str().expect("an order number"))
    .fetch_all(&app.pool)
    .await
    .expect("order lines")
}

async fn stock_of(app: &TestApp, product: i64) -> i64 {
    app.scalar_i64(&format!("select stock from product where id = {product}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_search_fill_a_cart_check_out_and_pay_in_a_real_browser() {
    // Arrange: three shoppers, a seller and three books, one with a last copy.
    let app = spawn_app().await;
    let shopper = app.create_user(Role::Customer).await;
    let late = app.create_user(Role::Customer).await;
    let rival = app.create_user(Role::Customer).await;
    let seller = app.create_user(Role::Seller).await;
    let (a_name, b_name, last_name) = (
        "The Lighthouse Almanac",
        "Tidewater Ferns",
        "The Last Copy of Quiet Bay",
    );
    let a = book(
        &app,
        &seller,
        a_name,
        "Tides, beacons and the keepers who kept them lit.",
        1250,
        5,
    )
    .await;
    let b = book(
        &app,
        &seller,
        b_name,
        "A field guide to the green things of salt marshes.",
        990,
        3,
    )
    .await;
    let last = book(
        &app,
        &seller,
        last_name,
        "A small town, a closed bookshop, one remaining book.",
        1500,
        1,
    )
    .await;
    let shots = screenshot_dir();

    // Act: the cart suite.
    let result = run_suite(
        "cart.mjs",
        &[
            ("SHOPPER", shopper.username.clone()),
            ("LATE", late.username.clone()),
            ("RIVAL", rival.username.clone()),
            ("SELLER", seller.username.clone()),
            ("BOOK_A", a.to_string()),
            ("BOOK_A_NAME", a_name.to_owned()),
            ("BOOK_B", b.to_string()),
            ("BOOK_B_NAME", b_name.to_owned()),
            ("BOOK_LAST", last.to_string()),
            ("BOOK_LAST_NAME", last_name.to_owned()),
        ],
        &app,
        &shots,
    )
    .await;

    // Assert: one paid order of both lines at the prices shown (the double
    // click made one), the stock down by what it holds, the shopper's cart
    // empty.
    let orders_of =
        |user: i64| format!("select count(*) from purchase_order where user_id = {user}");
    assert_eq!(app.scalar_i64(&orders_of(shopper.id)).await, 1);
    let paid = &result["paid_order"];
    assert_eq!(
        lines_of(&app, paid).await,
        [(a, 2, 1250), (b, 1, 990)],
        "the order holds the two lines the cart page showed"
    );
    let (status, total, currency): (String, i64, String) = sqlx::query_as(
        "select status, total_cents, currency from purchase_order where number = $1",
    )
    .bind(paid.as_str().expect("number"))
    .fetch_one(&app.pool)
    .await
    .expect("the paid order");
    assert_eq!(
        (status.as_str(), total, currency.as_str()),
        ("paid", 2 * 1250 + 990, "EUR")
    );
    // The seller set the second book's stock to 7 after the order took 1 of 3.
    assert_eq!((stock_of(&app, a).await, stock_of(&app, b).await), (3, 7));
    let cart_lines = |user: i64| format!("select count(*) from cart_item where user_id = {user}");
    assert_eq!(app.scalar_i64(&cart_lines(shopper.id)).await, 0);

    // The refused checkout held nothing: the rival has the last copy, the
    // late shopper no order and the cart as it was.
    assert_eq!(
        lines_of(&app, &result["rival_order"]).await,
        [(last, 1, 1500)]
    );
    assert_eq!(stock_of(&app, last).await, 0);
    assert_eq!(app.scalar_i64(&orders_of(late.id)).await, 0);
    let kept: Vec<(i64, i32)> =
        sqlx::query_as("select product_id, quantity from cart_item where user_id = $1")
            .bind(late.id)
            .fetch_all(&app.pool)
            .await
            .expect("the late shopper's cart");
    assert_eq!(kept, [(last, 1)], "the refused cart is unchanged");
    assert_eq!(
        app.scalar_i64(&format!("select sell_count from product where id = {last}"))
            .await,
        1
    );
    for page in ["product-page", "cart", "order-lines", "cart-out-of-stock"] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page}.png"
        );
    }
}
