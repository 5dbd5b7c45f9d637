//! Searching the catalog: `GET /products?q=` over name, description and the
//! seller's name, ranked, with the list's sort and paging.

use serde_json::{json, Value};

use flashsale::auth::Role;

use crate::helpers::{assert_error, body, spawn_app, TestApp, TestUser};

async fn list(app: &TestApp, name: &str, description: &str, seller: &TestUser) -> i64 {
    let (status, v) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": name, "description": description, "price_cents": 1000}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn search(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, v) = body(app.get(&format!("/api/v1/products?{query}"), None).await).await;
    assert_eq!(status, 200, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p: &Value| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn search_finds_name_description_and_seller_ranked_and_pages_like_the_list() {
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;
    let other = app.create_user(Role::Seller).await;
    let whale = list(&app, "Moby Dick", "A whale of a tale at sea", &seller).await;
    let sea = list(
        &app,
        "The Old Man and the Sea",
        "A fisherman and a marlin",
        &seller,
    )
    .await;
    let whaling = list(&app, "Ships", "On whaling ships and whales", &other).await;
    let cooking = list(&app, "Cooking for one", "Recipes", &other).await;

    // Stemming: "whales" finds "whale" and "whaling"'s "whales".
    let found = search(&app, "q=whales").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.contains(&whale) && found.contains(&whaling));
    // A name match ranks above a description match.
    assert_eq!(search(&app, "q=sea").await, vec![sea, whale]);
    // The seller's name.
    let mut by_seller = search(&app, &format!("q={}", other.username)).await;
    by_seller.sort_unstable();
    assert_eq!(by_seller, vec![whaling, cooking]);
    // Web search syntax: a phrase, a word left out.
    assert_eq!(search(&app, "q=%22old+man%22").await, vec![sea]);
    assert_eq!(search(&app, "q=sea+-marlin").await, vec![whale]);
    assert!(search(&app, "q=zeppelin").await.is_empty());
    // Stop words alone, punctuation alone: nothing, not an error.
    assert!(search(&app, "q=the").await.is_empty());
    assert!(search(&app, "q=%26%7C%21%28").await.is_empty());
    // An empty query is the plain list.
    assert_eq!(search(&app, "q=").await.len(), 4);

    // With the list's sort and paging, and its seller filter.
    let (status, _) = body(
        app.patch(
            &format!("/api/v1/products/{whaling}"),
            Some(&other.token),
            &json!({"stock": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        search(&app, "q=whale&sort=newest").await,
        vec![whaling, whale]
    );
    assert_eq!(
        search(&app, "q=whale&sort=newest&limit=1&offset=1").await,
        vec![whale]
    );
    assert_eq!(
        search(&app, &format!("q=whale&seller_id={}", seller.id)).await,
        vec![whale]
    );

    // A renamed product is found by its new name.
    let (status, _) = body(
        app.patch(
            &format!("/api/v1/products/{cooking}"),
            Some(&other.token),
            &json!({"name": "Zeppelins"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(search(&app, "q=zeppelin").await, vec![cooking]);

    let long = "a".repeat(201);
    assert_error(
        app.get(&format!("/api/v1/products?q={long}"), None).await,
        422,
        "validation_failed",
    )
    .await;
}
