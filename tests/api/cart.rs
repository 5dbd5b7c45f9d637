//! The cart: kept in the database, with today's prices and availability,
//! its bad input refused with the documented codes, checked out once per
//! key and once at a time; and the shared helpers of the catalog tests
//! (`checkout.rs`, `catalog_reports.rs`).

use std::collections::HashMap;

use serde_json::{json, Value};

use flashsale::auth::Role;

use crate::checkout::catalog_consistent;
use crate::helpers::{assert_error, body, spawn_app, TestApp, TestUser};

/// A book listed by `seller` with `stock` copies for the catalog.
pub(crate) async fn book(
    app: &TestApp,
    seller: &TestUser,
    name: &str,
    price_cents: i64,
    stock: i64,
    currency: &str,
) -> i64 {
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": name, "description": format!("{name}, a book"),
                    "price_cents": price_cents, "stock": stock, "currency": currency}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["stock"], stock, "{v}");
    v["id"].as_i64().expect("product id")
}

/// `PUT /cart/items/{product}` as `user`.
pub(crate) async fn put(
    app: &TestApp,
    user: &TestUser,
    product: Value,
    body: Value,
) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/v1/cart/items/{}", unquoted(&product))))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("PUT")
}

/// Sets a line of the cart, which must succeed; returns the cart.
pub(crate) async fn set(app: &TestApp, user: &TestUser, product: i64, quantity: i64) -> Value {
    let (status, cart) =
        body(put(app, user, json!(product), json!({"quantity": quantity})).await).await;
    assert_eq!(status, 200, "{cart}");
    cart
}

/// `GET /cart` as `user`.
pub(crate) async fn cart_of(app: &TestApp, user: &TestUser) -> Value {
    let (status, cart) = body(app.get("/api/v1/cart", Some(&user.token)).await).await;
    assert_eq!(status, 200, "{cart}");
    cart
}

/// `POST /cart/checkout` as `user`: status and body.
pub(crate) async fn checkout(app: &TestApp, user: &TestUser) -> (u16, Value) {
    body(
        app.client
            .post(app.url("/api/v1/cart/checkout"))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("POST checkout"),
    )
    .await
}

fn unquoted(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The line of `product` in a cart.
fn line(cart: &Value, product: i64) -> &Value {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["product"]["id"] == product)
        .unwrap_or_else(|| panic!("no line of {product} in {cart}"))
}

#[tokio::test]
async fn a_cart_shows_todays_prices_and_availability_and_survives_a_restart() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let plenty = book(&app, &seller, "Plenty", 1500, 10, "EUR").await;
    let scarce = book(&app, &seller, "Scarce", 2000, 1, "EUR").await;
    let shopper = app.create_user(Role::Customer).await;

    let empty = cart_of(&app, &shopper).await;
    assert_eq!(
        empty,
        json!({"items": [], "total_cents": 0, "currency": null, "ready": false})
    );

    set(&app, &shopper, plenty, 2).await;
    let cart = set(&app, &shopper, scarce, 1).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 2, "{cart}");
    assert_eq!(line(&cart, plenty)["quantity"], 2);
    assert_eq!(line(&cart, plenty)["total_cents"], 3000);
    assert_eq!(cart["total_cents"], 5000);
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(cart["ready"], true);

    // More than the stock: the line stays, shown as unavailable.
    let cart = set(&app, &shopper, scarce, 3).await;
    assert_eq!(line(&cart, scarce)["available"], false, "{cart}");
    assert_eq!(line(&cart, scarce)["product"]["stock"], 1);
    assert_eq!(cart["ready"], false);
    assert_eq!(cart["total_cents"], 9000);

    // Today's price: a price change shows at once.
    let (status, _) = body(
        app.patch(
            &format!("/api/v1/products/{plenty}"),
            Some(&seller.token),
            &json!({"price_cents": 1000}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        line(&cart_of(&app, &shopper).await, plenty)["unit_price_cents"],
        1000
    );

    // Another shopper's cart is their own.
    let other = app.create_user(Role::Customer).await;
    assert_eq!(cart_of(&app, &other).await["items"], json!([]));

    // Removing a line, twice (the second changes nothing).
    for _ in 0..2 {
        let (status, cart) = body(
            app.client
                .delete(app.url(&format!("/api/v1/cart/items/{scarce}")))
                .bearer_auth(&shopper.token)
                .send()
                .await
                .expect("DELETE"),
        )
        .await;
        assert_eq!(status, 200, "{cart}");
        assert_eq!(cart["items"].as_array().unwrap().len(), 1, "{cart}");
    }

    // The cart lives in the database: a server started after this one
    // stopped shows it, to a new login of the same shopper.
    let later = app.another_instance().await;
    app.stop().await;
    let (status, login) = body(
        later
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"username": shopper.username, "password": crate::helpers::PASSWORD}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let again = TestUser {
        token: login["access_token"].as_str().unwrap().to_string(),
        ..shopper
    };
    let cart = cart_of(&later, &again).await;
    assert_eq!(line(&cart, plenty)["quantity"], 2, "{cart}");
    assert_eq!(cart["total_cents"], 2000);
}

#[tokio::test]
async fn bad_quantities_unknown_products_and_empty_carts_get_their_codes() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let b = book(&app, &seller, "Some book", 500, 5, "EUR").await;
    let shopper = app.create_user(Role::Customer).await;

    for bad in [
        json!({"quantity": 0}),
        json!({"quantity": 101}),
        json!({"quantity": -1}),
        json!({"quantity": "two"}),
        json!({"quantity": 1.5}),
        json!({}),
        json!({"quantity": 9_999_999_999_i64}),
    ] {
        let v = assert_error(
            put(&app, &shopper, json!(b), bad.clone()).await,
            422,
            "validation_failed",
        )
        .await;
        assert!(v["error"]["details"].is_object(), "{bad} → {v}");
    }
    assert_error(
        put(&app, &shopper, json!(b), json!([1])).await,
        422,
        "validation_failed",
    )
    .await;
    assert_error(
        put(&app, &shopper, json!(987_654), json!({"quantity": 1})).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        put(&app, &shopper, json!("abc"), json!({"quantity": 1})).await,
        400,
        "bad_request",
    )
    .await;
    let raw = app
        .client
        .put(app.url(&format!("/api/v1/cart/items/{b}")))
        .bearer_auth(&shopper.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(raw, 400, "bad_request").await;
    let anonymous = app
        .client
        .get(app.url("/api/v1/cart"))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "unauthorized").await;
    let (status, v) = checkout(&app, &shopper).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("cart_empty")),
        "{v}"
    );

    // Nothing was written by any of it.
    assert_eq!(app.scalar_i64("select count(*) from cart_item").await, 0);
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );

    // At most 50 different books in one cart.
    let mut ids = Vec::new();
    for i in 0..51 {
        ids.push(book(&app, &seller, &format!("Book {i}"), 100, 1, "EUR").await);
    }
    for id in &ids[..50] {
        set(&app, &shopper, *id, 1).await;
    }
    assert_error(
        put(&app, &shopper, json!(ids[50]), json!({"quantity": 1})).await,
        422,
        "validation_failed",
    )
    .await;
    // Changing a line already there still works.
    set(&app, &shopper, ids[0], 2).await;
    assert_eq!(app.scalar_i64("select count(*) from cart_item").await, 50);
}

#[tokio::test]
async fn a_cart_of_two_currencies_is_refused_at_checkout_and_holds_nothing() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let eur = book(&app, &seller, "Euro book", 1000, 5, "EUR").await;
    let usd = book(&app, &seller, "Dollar book", 1000, 5, "USD").await;
    let shopper = app.create_user(Role::Customer).await;
    set(&app, &shopper, eur, 1).await;
    let cart = set(&app, &shopper, usd, 1).await;
    assert_eq!(
        (
            cart["currency"].clone(),
            cart["total_cents"].clone(),
            cart["ready"].clone()
        ),
        (Value::Null, Value::Null, json!(false)),
        "{cart}"
    );
    let (status, v) = checkout(&app, &shopper).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        0
    );
    assert_eq!(
        app.scalar_i64("select sum(stock)::bigint from product")
            .await,
        10
    );
    assert_eq!(app.scalar_i64("select count(*) from cart_item").await, 2);
}

#[tokio::test]
async fn a_checkout_with_a_key_is_answered_once_and_two_at_once_make_one_order() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let a = book(&app, &seller, "Alpha", 1000, 10, "EUR").await;
    let shopper = app.create_user(Role::Customer).await;
    set(&app, &shopper, a, 2).await;
    let keyed = || {
        app.client
            .post(app.url("/api/v1/cart/checkout"))
            .bearer_auth(&shopper.token)
            .header("Idempotency-Key", "checkout-1")
            .send()
    };
    let first = keyed().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = keyed().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        1
    );

    // Without a key, two checkouts of one cart at once: the second finds it
    // empty.
    set(&app, &shopper, a, 1).await;
    let (x, y) = tokio::join!(checkout(&app, &shopper), checkout(&app, &shopper));
    let mut statuses = [x.0, y.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", x.1, y.1);
    let refused = if x.0 == 409 { &x.1 } else { &y.1 };
    assert_eq!(refused["error"]["code"], "cart_empty");
    assert_eq!(
        app.scalar_i64("select count(*) from purchase_order").await,
        2
    );
    catalog_consistent(&app, &HashMap::from([(a, 10)])).await;
    assert_error(
        app.client
            .get(app.url("/api/v1/cart/checkout"))
            .bearer_auth(&shopper.token)
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
}
