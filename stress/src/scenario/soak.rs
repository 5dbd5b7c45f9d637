//! The soak of mixed traffic over several sales, and the storms of polls.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use super::{max_end, Common, Run};
use crate::environment::Environment;
use crate::load::{run_for, run_jobs, Kind, Load};
use crate::provision::{self, SaleSpec};

/// `mixed`: for `duration`, a soak of status polling (35%), catalog browsing
/// (20%), logins (5%) and purchases (40%) over `sales` sales at once, the
/// first of them hot (70% of the purchases), by buyers drawn from a pool of
/// `users`. Purchases of the hot sale and of the others are measured apart,
/// so a starved sale shows.
pub async fn mixed(
    env: &Environment,
    c: &Common,
    duration: Duration,
    sales: usize,
    stock: i64,
    users: usize,
) -> anyhow::Result<Run> {
    let people = Arc::new(provision::buyers(env, users, "mx").await?);
    let logins = Arc::new(provision::login_users(env, 20).await?);
    let admin = provision::admin_token(env, &c.admin).await?;
    let mut made = Vec::new();
    for _ in 0..sales.max(1) {
        made.push(provision::sale(env, &admin, SaleSpec::new(stock, -1000, c.hold_secs)).await?);
    }
    let ids: Arc<Vec<i64>> = Arc::new(made.iter().map(|s| s.id).collect());
    let mut load = Load::for_env(env, c)?;
    load.reset_clock();
    let ledger = run_for(c.connections, duration, "mixed", move |w, mut ledger| {
        let load = load.clone();
        let people = people.clone();
        let logins = logins.clone();
        let ids = ids.clone();
        async move {
            let (roll, pick, who, page) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_range(0..100u32),
                    rng.gen_range(0..100u32),
                    rng.gen_range(0..people.len()),
                    rng.gen_range(0..3u32),
                )
            };
            let hot = pick < 70 || ids.len() == 1;
            let sale = if hot {
                ids[0]
            } else {
                ids[1 + (pick as usize) % (ids.len() - 1)]
            };
            if roll < 35 {
                load.get(
                    w,
                    &format!("/api/v1/sales/{sale}/status"),
                    Kind::Status,
                    &mut ledger,
                )
                .await;
            } else if roll < 55 {
                let path = match page {
                    0 => "/api/v1/products?sort=best_selling".to_string(),
                    1 => "/api/v1/sales?state=active".to_string(),
                    _ => format!("/api/v1/sales/{sale}"),
                };
                load.get(w, &path, Kind::Browse, &mut ledger).await;
            } else if roll < 60 {
                let name = &logins[who % logins.len()];
                load.login(w, name, provision::LOGIN_PASSWORD, &mut ledger)
                    .await;
            } else {
                let kind = if hot {
                    Kind::Purchase
                } else {
                    Kind::PurchaseOther
                };
                load.purchase_until_final_as(kind, w, &people[who], sale, 5, &mut ledger)
                    .await;
            }
            ledger
        }
    })
    .await;
    Ok(Run {
        scenario: "mixed",
        params: json!({"duration_secs": duration.as_secs(), "sales": sales, "stock": stock, "users": users,
                       "hold_secs": c.hold_secs, "connections": c.connections}),
        environment: env.describe(),
        elapsed: duration,
        sales: made,
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// `status` / `health`: `requests` GETs of a sale's `/status` (or of
/// `/healthz`, the server's floor for comparison) over the connections.
pub async fn poll(
    env: &Environment,
    c: &Common,
    requests: usize,
    health: bool,
) -> anyhow::Result<Run> {
    let admin = provision::admin_token(env, &c.admin).await?;
    let sale = provision::sale(env, &admin, SaleSpec::new(1000, -1000, 0)).await?;
    let (path, kind, name) = if health {
        ("/healthz".to_string(), Kind::Health, "health")
    } else {
        (
            format!("/api/v1/sales/{}/status", sale.id),
            Kind::Status,
            "status",
        )
    };
    let mut load = Load::for_env(env, c)?;
    load.reset_clock();
    let path = Arc::new(path);
    let ledger = run_jobs(
        c.connections,
        vec![(); requests],
        name,
        move |w, _jobs: Arc<Vec<()>>, _i, mut ledger| {
            let load = load.clone();
            let path = path.clone();
            async move {
                load.get(w, &path, kind, &mut ledger).await;
                ledger
            }
        },
    )
    .await;
    Ok(Run {
        scenario: name,
        params: json!({"requests": requests, "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}
