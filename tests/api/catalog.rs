//! The catalog: listing, reading, changing and sorting products.

use flashsale::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{assert_error, body, spawn_app, TestApp};

/// The ids of a `{items: [...]}` list, in order.
fn ids(list: &Value) -> Vec<i64> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_i64().expect("id"))
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, v) = body(app.get(&format!("/api/v1/products{query}"), None).await).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn a_seller_lists_a_product_with_every_field_and_no_sales_yet() {
    // Arrange
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let before = app.db_now().await;

    // Act
    let (status, p) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": "Dune", "description": "A desert planet.", "price_cents": 1999, "currency": "USD"}),
        )
        .await,
    )
    .await;

    // Assert
    let after = app.db_now().await;
    assert_eq!(status, 201, "{p}");
    let keys: Vec<&str> = p
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "id",
        "seller_id",
        "name",
        "description",
        "price_cents",
        "currency",
        "sell_count",
        "created_at",
    ] {
        assert!(keys.contains(&key), "product has `{key}`: {p}");
    }
    assert!(p["id"].as_i64().is_some(), "{p}");
    assert_eq!(p["seller_id"], seller.id);
    assert_eq!(p["name"], "Dune");
    assert_eq!(p["description"], "A desert planet.");
    assert_eq!(p["price_cents"], 1999);
    assert_eq!(p["currency"], "USD");
    assert_eq!(p["sell_count"], 0);
    let created: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(p["created_at"].clone()).expect("created_at is RFC 3339");
    assert!(
        before <= created && created <= after,
        "created_at is database time: {p}"
    );
    let stored = app
        .scalar_i64(&format!(
            "select count(*) from product where id = {} and seller_id = {}",
            p["id"], seller.id
        ))
        .await;
    assert_eq!(stored, 1, "the product is in the database");
}

#[tokio::test]
async fn the_currency_defaults_to_eur() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;

    let p = app.create_product_by(&seller, 500).await;

    assert_eq!(p["currency"], "EUR", "{p}");
    assert_eq!(p["description"], "pages");
}

#[tokio::test]
async fn an_admin_lists_a_product_for_a_seller() {
    // Arrange
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let seller = app.create_user(Role::Seller).await;

    // Act
    let (status, p) = body(
        app.post(
            "/api/v1/products",
            Some(&admin.token),
            &json!({"name": "Emma", "price_cents": 900, "seller_id": seller.id}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 201, "{p}");
    assert_eq!(
        p["seller_id"], seller.id,
        "listed for the seller, not the admin"
    );
    assert_eq!(p["description"], "", "description defaults to empty");
}

#[tokio::test]
async fn an_admin_cannot_list_a_product_for_a_customer() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let customer = app.create_user(Role::Customer).await;

    let resp = app
        .post(
            "/api/v1/products",
            Some(&admin.token),
            &json!({"name": "Emma", "price_cents": 900, "seller_id": customer.id}),
        )
        .await;

    let v = assert_error(resp, 422, "validation_failed").await;
    assert!(
        v["error"]["details"]["fields"]["seller_id"].is_string(),
        "{v}"
    );
    assert_eq!(app.scalar_i64("select count(*) from product").await, 0);
}

#[tokio::test]
async fn a_seller_cannot_list_a_product_for_another_seller() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let other = app.create_user(Role::Seller).await;

    let resp = app
        .post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": "Emma", "price_cents": 900, "seller_id": other.id}),
        )
        .await;

    assert_error(resp, 403, "forbidden").await;
    assert_eq!(app.scalar_i64("select count(*) from product").await, 0);
}

#[tokio::test]
async fn anyone_reads_one_product() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let created = app.create_product_by(&seller, 1234).await;

    let (status, p) = body(
        app.get(&format!("/api/v1/products/{}", created["id"]), None)
            .await,
    )
    .await;

    assert_eq!(status, 200, "{p}");
    assert_eq!(p, created, "GET shows what POST answered");
}

#[tokio::test]
async fn an_unknown_product_is_not_found() {
    let app = spawn_app().await;

    let resp = app.get("/api/v1/products/987654321", None).await;

    assert_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn its_seller_changes_a_product() {
    // Arrange
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let p = app.create_product_by(&seller, 1000).await;
    let path = format!("/api/v1/products/{}", p["id"]);

    // Act
    let (status, changed) = body(
        app.patch(
            &path,
            Some(&seller.token),
            &json!({"name": "Second Edition", "price_cents": 1500}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "Second Edition");
    assert_eq!(changed["price_cents"], 1500);
    assert_eq!(
        changed["description"], p["description"],
        "untouched fields stay"
    );
    assert_eq!(changed["currency"], p["currency"]);
    let (_, read) = body(app.get(&path, None).await).await;
    assert_eq!(read, changed, "the change is stored");
}

#[tokio::test]
async fn an_admin_changes_any_product() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let admin = app.create_user(Role::Admin).await;
    let p = app.create_product_by(&seller, 1000).await;
    let path = format!("/api/v1/products/{}", p["id"]);

    let (status, changed) = body(
        app.patch(
            &path,
            Some(&admin.token),
            &json!({"description": "Now with maps."}),
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["description"], "Now with maps.");
    assert_eq!(
        changed["seller_id"], seller.id,
        "the seller stays the seller"
    );
    assert_eq!(changed["name"], p["name"]);
}

#[tokio::test]
async fn another_seller_cannot_change_a_product() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let other = app.create_user(Role::Seller).await;
    let p = app.create_product_by(&seller, 1000).await;
    let path = format!("/api/v1/products/{}", p["id"]);

    let resp = app
        .patch(&path, Some(&other.token), &json!({"name": "Mine now"}))
        .await;

    assert_error(resp, 403, "forbidden").await;
    let (_, read) = body(app.get(&path, None).await).await;
    assert_eq!(read["name"], p["name"], "nothing changed");
}

#[tokio::test]
async fn changing_an_unknown_product_is_not_found() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;

    let resp = app
        .patch(
            "/api/v1/products/987654321",
            Some(&admin.token),
            &json!({"name": "x"}),
        )
        .await;

    assert_error(resp, 404, "not_found").await;
}

#[tokio::test]
async fn products_are_listed_newest_first_by_default_and_with_sort_newest() {
    // Arrange
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let mut made = Vec::new();
    for price in [100, 200, 300] {
        made.push(
            app.create_product_by(&seller, price).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    made.reverse();

    // Act
    let newest = list(&app, "?sort=newest").await;
    let default = list(&app, "").await;

    // Assert
    assert_eq!(ids(&newest), made);
    assert_eq!(ids(&default), made);
}

#[tokio::test]
async fn best_selling_lists_products_by_units_really_sold() {
    // Arrange: three products whose sales order differs from both their
    // creation order and its reverse, made by real purchases.
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let oldest = app.create_product_by(&seller, 100).await["id"]
        .as_i64()
        .unwrap();
    let middle = app.create_product_by(&seller, 100).await["id"]
        .as_i64()
        .unwrap();
    let newest = app.create_product_by(&seller, 100).await["id"]
        .as_i64()
        .unwrap();
    let buyers = app.create_customers(3).await;
    for (product, quantities) in [(oldest, vec![3, 2]), (middle, vec![1]), (newest, vec![2])] {
        let sale = app.create_sale_of(product, -60, 3600, 100, 3).await["id"]
            .as_i64()
            .unwrap();
        for (buyer, q) in buyers.iter().zip(quantities) {
            app.buy(sale, buyer, q).await;
        }
    }

    // Act
    let best = list(&app, "?sort=best_selling").await;

    // Assert
    assert_eq!(ids(&best), vec![oldest, newest, middle], "{best}");
    let counts: Vec<i64> = best["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sell_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![5, 2, 1]);
}

#[tokio::test]
async fn an_unknown_sort_is_a_validation_error() {
    let app = spawn_app().await;

    let resp = app.get("/api/v1/products?sort=cheapest", None).await;

    assert_error(resp, 422, "validation_failed").await;
}

#[tokio::test]
async fn limit_and_offset_page_through_the_products() {
    // Arrange
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let mut made = Vec::new();
    for price in 1..=5 {
        made.push(
            app.create_product_by(&seller, price).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    made.reverse();

    // Act
    let first = ids(&list(&app, "?limit=2&offset=0").await);
    let second = ids(&list(&app, "?limit=2&offset=2").await);
    let third = ids(&list(&app, "?limit=2&offset=4").await);
    let beyond = ids(&list(&app, "?limit=2&offset=5").await);

    // Assert
    assert_eq!(first, made[0..2]);
    assert_eq!(second, made[2..4]);
    assert_eq!(third, made[4..5]);
    assert!(beyond.is_empty());
}

#[tokio::test]
async fn limits_out_of_range_are_validation_errors() {
    let app = spawn_app().await;

    for query in ["?limit=0", "?limit=101", "?offset=-1", "?limit=ten"] {
        let resp = app.get(&format!("/api/v1/products{query}"), None).await;
        assert_error(resp, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn products_filtered_by_seller_are_only_that_sellers_own() {
    // Arrange: two sellers, two products each, listed alternately.
    let app = spawn_app().await;
    let mira = app.create_user(Role::Seller).await;
    let tobin = app.create_user(Role::Seller).await;
    let mut miras = Vec::new();
    for _ in 0..2 {
        miras.push(
            app.create_product_by(&mira, 1000).await["id"]
                .as_i64()
                .expect("id"),
        );
        app.create_product_by(&tobin, 1000).await;
    }
    miras.reverse();

    // Act
    let mine = list(&app, &format!("?seller_id={}", mira.id)).await;
    let nobody = list(&app, "?seller_id=999999").await;

    // Assert: newest first, none of the other seller's.
    assert_eq!(ids(&mine), miras);
    assert!(ids(&nobody).is_empty(), "{nobody}");
}

#[tokio::test]
async fn a_seller_filter_that_is_not_a_number_is_validation_failed() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/products?seller_id=me", None).await;
    assert_error(resp, 422, "validation_failed").await;
}
