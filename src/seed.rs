//! Demo data from `seed/demo.json`: accounts, sellers with books, and a flash
//! sale that starts a couple of minutes after loading.

use anyhow::Context;
use serde::Deserialize;

use crate::auth::password;
use crate::db::Db;

/// The demo data, embedded at build time.
pub const DEMO_JSON: &str = include_str!("../seed/demo.json");

#[derive(Deserialize)]
struct Demo {
    password: String,
    users: Vec<DemoUser>,
    products: Vec<DemoProduct>,
    sales: Vec<DemoSale>,
}

#[derive(Deserialize)]
struct DemoUser {
    username: String,
    email: String,
    role: String,
}

#[derive(Deserialize)]
struct DemoProduct {
    seller: String,
    name: String,
    description: String,
    price_cents: i64,
    currency: String,
    /// Copies for catalog orders (0: sold only in its sales).
    #[serde(default)]
    stock: i64,
}

#[derive(Deserialize)]
struct DemoSale {
    product: String,
    starts_in_secs: i64,
    /// Time a winner has to pay.
    hold_secs: i32,
    duration_secs: i64,
    stock: i64,
    price_cents: i64,
    per_user_limit: i32,
    /// Sells only to shoppers admitted from its queue (default 100 a second,
    /// two minutes to buy).
    #[serde(default)]
    waiting_room: bool,
}

/// What a seed run did.
#[derive(Debug)]
pub struct SeedReport {
    /// `false` when the demo accounts already existed and nothing was written.
    pub loaded: bool,
    /// Every demo account but `admin`.
    pub usernames: Vec<String>,
    /// Their shared password (public: they are for trying the shop).
    pub password: String,
}

/// The demo admin's name. Its password is never the public demo password:
/// the caller chooses it (the embedded mode generates one and keeps it).
pub const ADMIN: &str = "admin";

/// The demo accounts and their password, without touching the database.
pub fn demo_accounts() -> anyhow::Result<SeedReport> {
    let demo: Demo = serde_json::from_str(DEMO_JSON).context("seed/demo.json is malformed")?;
    Ok(SeedReport {
        loaded: false,
        usernames: others(&demo),
        password: demo.password,
    })
}

fn others(demo: &Demo) -> Vec<String> {
    demo.users
        .iter()
        .map(|u| u.username.clone())
        .filter(|u| u != ADMIN)
        .collect()
}

/// Loads the demo data in one transaction, unless the `admin` account already
/// exists; `admin` gets `admin_password`, the others the demo password.
/// Passwords are hashed at `bcrypt_cost`.
pub async fn load(pool: &Db, bcrypt_cost: u32, admin_password: &str) -> anyhow::Result<SeedReport> {
    let demo: Demo = serde_json::from_str(DEMO_JSON).context("seed/demo.json is malformed")?;
    let usernames = others(&demo);
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from app_user where lower(username) = 'admin')",
    )
    .fetch_one(pool)
    .await?;
    if exists {
        return Ok(SeedReport {
            loaded: false,
            usernames,
            password: demo.password,
        });
    }
    // One hash for the demo password: every demo account but admin shares it.
    let hash = password::hash(demo.password.clone(), bcrypt_cost).await?;
    let admin_hash = password::hash(admin_password.to_string(), bcrypt_cost).await?;
    let mut tx = pool.begin().await?;
    for u in &demo.users {
        let hash = if u.username == ADMIN {
            &admin_hash
        } else {
            &hash
        };
        sqlx::query("insert into app_user (username, email, password_hash, role, email_verified_at) values ($1, $2, $3, $4, now())")
            .bind(&u.username)
            .bind(&u.email)
            .bind(hash)
            .bind(&u.role)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("demo user {}", u.username))?;
    }
    for p in &demo.products {
        sqlx::query(
            "insert into product (seller_id, name, description, price_cents, currency, stock)
             select id, $2, $3, $4, $5, $6 from app_user where username = $1",
        )
        .bind(&p.seller)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.price_cents)
        .bind(&p.currency)
        .bind(p.stock)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("demo product {}", p.name))?;
    }
    for s in &demo.sales {
        let n = sqlx::query(
            "insert into sale (product_id, starts_at, ends_at, stock, remaining, price_cents, per_user_limit,
                               hold_secs, waiting_room, created_by)
             select p.id, now() + make_interval(secs => $2), now() + make_interval(secs => $2 + $3),
                    $4, $4, $5, $6, $7, $8, (select id from app_user where username = 'admin')
               from product p where p.name = $1",
        )
        .bind(&s.product)
        .bind(s.starts_in_secs as f64)
        .bind(s.duration_secs as f64)
        .bind(s.stock)
        .bind(s.price_cents)
        .bind(s.per_user_limit)
        .bind(s.hold_secs)
        .bind(s.waiting_room)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("demo sale of {}", s.product))?
        .rows_affected();
        anyhow::ensure!(n == 1, "demo sale names unknown product {:?}", s.product);
    }
    tx.commit().await?;
    Ok(SeedReport {
        loaded: true,
        usernames,
        password: demo.password,
    })
}
