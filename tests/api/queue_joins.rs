//! Joins before the draw from several places at once: every shopper gets one
//! ticket however many times and through however many instances it joins,
//! and a token whose account is gone gets none. Real parallel requests, then
//! the database is checked.

use std::collections::HashMap;

use tokio::task::JoinSet;

use crate::helpers::{assert_error, spawn_app};
use crate::queue::{join, room_sale};

#[tokio::test]
async fn parallel_joins_through_two_instances_make_one_ticket_per_shopper() {
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let sale = room_sale(&a, 3600, 5, 100, 120).await;
    let shoppers = a.create_customers(40).await;
    // Every shopper joins three times through each instance, all at once:
    // B has not heard of A's tickets, so its repeats reach the database.
    let mut set = JoinSet::new();
    for u in &shoppers {
        for (client, url) in [&a, &b, &a, &b, &a, &b].map(|app| {
            (
                app.client.clone(),
                app.url(&format!("/api/v1/sales/{sale}/queue")),
            )
        }) {
            let (id, token) = (u.id, u.token.clone());
            set.spawn(async move {
                let r = client.post(&url).bearer_auth(&token).send().await;
                let r = r.expect("an answer");
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.expect("a body");
                (id, status, v)
            });
        }
    }
    let mut created: HashMap<i64, usize> = HashMap::new();
    while let Some(joined) = set.join_next().await {
        let (id, status, v) = joined.expect("a join");
        assert!(status == 200 || status == 201, "{status} {v}");
        assert_eq!(
            (v["state"].as_str(), &v["position"]),
            (Some("waiting"), &serde_json::Value::Null),
            "{v}"
        );
        *created.entry(id).or_default() += usize::from(status == 201);
    }
    assert_eq!(created.len(), 40);
    assert!(
        created.values().all(|&n| n == 1),
        "exactly one join of each shopper made its ticket: {created:?}"
    );
    let (tickets, shoppers_with_one): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct user_id) from queue_ticket where sale_id = $1",
    )
    .bind(sale)
    .fetch_one(&a.pool)
    .await
    .unwrap();
    assert_eq!((tickets, shoppers_with_one), (40, 40));
    b.stop().await;
}

#[tokio::test]
async fn a_token_whose_account_is_gone_gets_no_ticket() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 3600, 5, 100, 120).await;
    let shoppers = app.create_customers(2).await;
    sqlx::query("delete from app_user where id = $1")
        .bind(shoppers[0].id)
        .execute(&app.pool)
        .await
        .unwrap();
    let path = format!("/api/v1/sales/{sale}/queue");
    assert_error(
        app.post(&path, Some(&shoppers[0].token), &serde_json::json!({}))
            .await,
        401,
        "unauthorized",
    )
    .await;
    let (status, v) = join(&app, sale, &shoppers[1]).await;
    assert_eq!(status, 201, "{v}");
    let users: Vec<i64> = sqlx::query_scalar("select user_id from queue_ticket where sale_id = $1")
        .bind(sale)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, vec![shoppers[1].id]);
}
