//! Making what a run needs: buyers with tokens, a product and a sale.
//!
//! With the database reachable, buyers are inserted in one SQL statement
//! (`generate_series`) and their access tokens are signed locally with the
//! servers' JWT secret: 100,000 buyers take a second or two. Without it,
//! buyers register through the API, which is as slow as the servers' bcrypt
//! cost allows (start them with a low `BCRYPT_COST` for that).

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use flashsale::auth::Role;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::environment::Environment;

/// A buyer the harness acts as.
#[derive(Clone, Debug)]
pub struct Buyer {
    pub id: i64,
    pub token: String,
}

/// A sale made for a run.
#[derive(Clone, Debug)]
pub struct SaleInfo {
    pub id: i64,
    pub product_id: i64,
    pub stock: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// How long a winner's unit is held for payment; 0 confirms at once.
    pub hold_secs: i64,
}

/// How the harness signs in as an admin when the database is not reachable.
#[derive(Clone, Debug, Default)]
pub struct AdminLogin {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Makes `n` buyers with tokens.
pub async fn buyers(env: &Environment, n: usize, tag: &str) -> anyhow::Result<Vec<Buyer>> {
    match (&env.db, &env.jwt) {
        (Some(db), Some(jwt)) => {
            let prefix = format!("{tag}{}", run_tag());
            let rows: Vec<(i64,)> = sqlx::query_as(
                "insert into app_user (username, email, password_hash)
                 select $1 || '_' || g, $1 || '_' || g || '@stress.test', '!'
                   from generate_series(1, $2) g
                 returning id",
            )
            .bind(&prefix)
            .bind(n as i32)
            .fetch_all(db)
            .await
            .context("inserting buyers")?;
            // A real shop's accounts exist long before its sale: let the
            // database settle (visibility map, statistics) as it would have,
            // so autovacuum does not rework the fresh rows during the run.
            sqlx::query("vacuum (analyze) app_user")
                .execute(db)
                .await
                .context("vacuuming buyers")?;
            rows.into_iter()
                .map(|(id,)| {
                    let (token, _) = jwt
                        .issue(id, Role::Customer)
                        .map_err(|e| anyhow::anyhow!("signing a token: {e}"))?;
                    Ok(Buyer { id, token })
                })
                .collect()
        }
        _ => register_buyers(env, n, tag).await,
    }
}

async fn register_buyers(env: &Environment, n: usize, tag: &str) -> anyhow::Result<Vec<Buyer>> {
    let client = reqwest::Client::new();
    let prefix = format!("{tag}{}", run_tag());
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let url = format!(
            "{}/api/v1/auth/register",
            env.targets[i % env.targets.len()]
        );
        let name = format!("{prefix}_{i}");
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let resp = client
                .post(url)
                .json(&json!({"username": name, "email": format!("{name}@stress.test"), "password": LOGIN_PASSWORD}))
                .send()
                .await?;
            let status = resp.status();
            let v: Value = resp.json().await?;
            if status.as_u16() != 201 {
                bail!("registering a buyer answered {status}: {v}");
            }
            Ok(Buyer {
                id: v["user"]["id"].as_i64().context("user id")?,
                token: v["access_token"].as_str().context("token")?.to_string(),
            })
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// The password of the accounts made by [`login_users`].
pub const LOGIN_PASSWORD: &str = "stress-password";

/// `n` accounts that sign in with [`LOGIN_PASSWORD`]; returns their usernames.
pub async fn login_users(env: &Environment, n: usize) -> anyhow::Result<Vec<String>> {
    if let Some(db) = &env.db {
        // bcrypt at the lowest cost: the harness measures the server, and a
        // hash records its own cost.
        let hash = flashsale::auth::password::hash(LOGIN_PASSWORD.into(), 4).await?;
        let prefix = format!("li{}", run_tag());
        return Ok(sqlx::query_scalar(
            "insert into app_user (username, email, password_hash)
             select $1 || '_' || g, $1 || '_' || g || '@stress.test', $3
               from generate_series(1, $2) g
             returning username",
        )
        .bind(&prefix)
        .bind(n as i32)
        .bind(hash)
        .fetch_all(db)
        .await?);
    }
    let made = register_buyers(env, n, "li").await?;
    // register_buyers names accounts `<prefix>_<i>`; read them back via /me.
    let client = reqwest::Client::new();
    let mut names = Vec::new();
    for b in made {
        let v: Value = client
            .get(format!("{}/api/v1/me", env.targets[0]))
            .bearer_auth(&b.token)
            .send()
            .await?
            .json()
            .await?;
        names.push(v["username"].as_str().context("username")?.to_string());
    }
    Ok(names)
}

/// An admin token: minted for an admin made by SQL, or from a login.
pub async fn admin_token(env: &Environment, login: &AdminLogin) -> anyhow::Result<String> {
    if let (Some(db), Some(jwt)) = (&env.db, &env.jwt) {
        let name = format!("stress_admin{}", run_tag());
        let id: i64 = sqlx::query_scalar(
            "insert into app_user (username, email, password_hash, role)
             values ($1, $1 || '@stress.test', '!', 'admin') returning id",
        )
        .bind(&name)
        .fetch_one(db)
        .await?;
        return Ok(jwt
            .issue(id, Role::Admin)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .0);
    }
    let (Some(user), Some(password)) = (&login.username, &login.password) else {
        bail!("without --database-url and --jwt-secret the harness needs --admin-user and --admin-password to create sales");
    };
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", env.targets[0]))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?;
    let v: Value = resp.json().await?;
    v["access_token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("admin login failed: {v}"))
}

/// The database clock, read from an instance's answer.
pub async fn server_time(env: &Environment) -> anyhow::Result<DateTime<Utc>> {
    let v: Value = reqwest::get(format!("{}/api/v1/sales?limit=1", env.targets[0]))
        .await?
        .json()
        .await?;
    if let Some(t) = v["items"][0]["server_time"].as_str() {
        return Ok(t.parse()?);
    }
    if let Some(db) = &env.db {
        return Ok(sqlx::query_scalar("select now()").fetch_one(db).await?);
    }
    Ok(Utc::now())
}

/// What a sale made for a run looks like.
#[derive(Clone, Copy, Debug)]
pub struct SaleSpec {
    pub stock: i64,
    /// The window opens this long after the database clock's now (negative:
    /// it opened that long ago).
    pub lead_ms: i64,
    pub duration_ms: i64,
    pub per_user_limit: i64,
    /// The sale's `hold_secs`: how long a win waits for payment.
    pub hold_secs: i64,
    /// A waiting room: `(admit_per_sec, admission_secs)`.
    pub room: Option<(i64, i64)>,
}

impl SaleSpec {
    /// A sale of `stock`, one unit per buyer, open for an hour from `lead_ms`.
    pub fn new(stock: i64, lead_ms: i64, hold_secs: i64) -> SaleSpec {
        SaleSpec {
            stock,
            lead_ms,
            duration_ms: 3_600_000,
            per_user_limit: 1,
            hold_secs,
            room: None,
        }
    }
}

/// A product and a sale as `spec` describes, placed by the database clock.
/// The environment notes the sale, so the invariants are sampled on it while
/// the run goes on.
pub async fn sale(env: &Environment, admin: &str, spec: SaleSpec) -> anyhow::Result<SaleInfo> {
    let SaleSpec {
        stock,
        lead_ms,
        duration_ms,
        per_user_limit,
        hold_secs,
        room,
    } = spec;
    let client = reqwest::Client::new();
    let base = &env.targets[0];
    let product: Value = client
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(admin)
        .json(&json!({"name": format!("Stress title {}", run_tag()), "description": "made by the stress harness", "price_cents": 1500}))
        .send()
        .await?
        .json()
        .await?;
    let product_id = product["id"]
        .as_i64()
        .with_context(|| format!("creating a product: {product}"))?;
    // The window is placed by the database clock (read through the API).
    let now = match &env.db {
        Some(db) => sqlx::query_scalar("select now()").fetch_one(db).await?,
        None => server_time(env).await?,
    };
    let starts_at = now + chrono::Duration::milliseconds(lead_ms);
    let ends_at = starts_at + chrono::Duration::milliseconds(duration_ms);
    let mut body = json!({"product_id": product_id, "starts_at": starts_at, "ends_at": ends_at,
                          "stock": stock, "price_cents": 1000, "per_user_limit": per_user_limit,
                          "hold_secs": hold_secs});
    if let Some((admit_per_sec, admission_secs)) = room {
        body["waiting_room"] = json!(true);
        body["admit_per_sec"] = json!(admit_per_sec);
        body["admission_secs"] = json!(admission_secs);
    }
    let sale: Value = client
        .post(format!("{base}/api/v1/sales"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let id = sale["id"]
        .as_i64()
        .with_context(|| format!("creating a sale: {sale}"))?;
    env.note_sale(id);
    Ok(SaleInfo {
        id,
        product_id,
        stock,
        starts_at,
        ends_at,
        hold_secs,
    })
}

/// `n` catalog books of `copies` each, made through the API as an admin and
/// noted in the environment (so the sampler watches them); their ids.
pub async fn catalog(
    env: &Environment,
    admin: &str,
    n: usize,
    copies: i64,
) -> anyhow::Result<Vec<i64>> {
    let client = reqwest::Client::new();
    let tag = run_tag();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let product: Value = client
            .post(format!("{}/api/v1/products", env.targets[0]))
            .bearer_auth(admin)
            .json(&json!({"name": format!("Stress book {tag} {i}"),
                          "description": "stocked by the stress harness",
                          "price_cents": 1200 + 100 * (i as i64 % 5), "currency": "EUR",
                          "stock": copies}))
            .send()
            .await?
            .json()
            .await?;
        let id = product["id"]
            .as_i64()
            .with_context(|| format!("creating a book: {product}"))?;
        env.note_product(id, copies);
        ids.push(id);
    }
    Ok(ids)
}

/// A short tag that keeps names of different runs apart.
fn run_tag() -> String {
    use rand::Rng;
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}
