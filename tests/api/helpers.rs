//! The test harness: one throwaway PostgreSQL cluster per test process
//! (started with the same launcher as the embedded default, or the server
//! named by `DATABASE_URL`), a fresh database per test, and a server on a free
//! port per test.

#![allow(dead_code)]

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::auth::{JwtKeys, Role};
use flashsale::config::{AppSettings, EmailSettings, PaymentProvider, PurchaseSettings, Rate};
use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg};
use flashsale::startup::{Application, Listen, Secrets};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The password of every user made by [`TestApp::create_user`].
pub const PASSWORD: &str = "correct-horse-battery";
const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123";
/// The test servers' PAYMENT_WEBHOOK_SECRET.
pub const WEBHOOK_SECRET: &[u8] = b"test-webhook-secret-test-webhook-secret-9";

enum Cluster {
    Embedded(EmbeddedPg),
    Url(Box<PgConnectOptions>, String),
}

impl Cluster {
    fn options(&self, db: &str) -> PgConnectOptions {
        match self {
            Cluster::Embedded(pg) => pg.connect_options(db),
            Cluster::Url(o, _) => (**o).clone().database(db),
        }
    }

    /// A connection URL for database `db`, for server processes.
    fn url(&self, db: &str) -> String {
        match self {
            Cluster::Embedded(pg) => pg.url(db),
            Cluster::Url(_, url) => {
                let (base, query) = url.split_once('?').unwrap_or((url, ""));
                let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                format!("{server}/{db}{query}")
            }
        }
    }
}

/// The data directory of the tests' own cluster (`None` with `DATABASE_URL`).
pub fn embedded_data_dir() -> Option<std::path::PathBuf> {
    match cluster() {
        Cluster::Embedded(pg) => Some(pg.data_dir().to_path_buf()),
        Cluster::Url(..) => None,
    }
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Cluster::Url(
                Box::new(PgConnectOptions::from_str(&url).expect("DATABASE_URL is valid")),
                url,
            );
        }
        let dir = flashsale::embedded_pg::scratch_dir("flashsale-test")
            .expect("create the test cluster directory");
        let pg = EmbeddedPg::start(&EmbeddedOptions {
            data_dir: dir,
            bin_dir: None,
            ephemeral: true,
            max_connections: 400,
        })
        .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"));
        Cluster::Embedded(pg)
    })
}

/// Settings for tests: cheap bcrypt, generous limits so that only the tests
/// about limits meet them, and a long pool wait so that bursts queue.
pub fn test_settings() -> AppSettings {
    AppSettings {
        access_token_ttl: Duration::from_secs(900),
        refresh_token_ttl: Duration::from_secs(3600),
        bcrypt_cost: 4,
        purchase_rate: Rate::new(100_000, 100_000),
        purchase_ip_rate: None,
        auth_rate: Rate::new(100_000, 100_000),
        db_max_connections: 10,
        db_acquire_timeout: Duration::from_secs(60),
        purchase: PurchaseSettings::default(),
        // Emails wait in the outbox and no jobs run, unless a test asks.
        email: EmailSettings::default(),
        metrics_token: None,
        payment_provider: PaymentProvider::Test,
        cart_hold_secs: 900,
    }
}

/// A running server on its own fresh database.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub jwt: JwtKeys,
    pub db_name: String,
    pub settings: AppSettings,
    stopper: flashsale::startup::Stopper,
}

/// A user made directly in the database, with a valid access token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose settings `tweak` may change first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut AppSettings)) -> TestApp {
    let mut settings = test_settings();
    tweak(&mut settings);
    let cluster = tokio::task::spawn_blocking(cluster).await.expect("cluster");
    let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&cluster.options("postgres"))
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("create database \"{db_name}\""))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    admin.close().await.ok();
    start_instance(db_name, settings, true).await
}

/// A server on `db_name` (migrated first when `migrate`).
async fn start_instance(db_name: String, settings: AppSettings, migrate: bool) -> TestApp {
    let cluster = tokio::task::spawn_blocking(cluster).await.expect("cluster");
    let pool = flashsale::db::connect(cluster.options(&db_name), &settings, false)
        .await
        .expect("connect to the test database")
        .pool()
        .clone();
    if migrate {
        flashsale::db::migrate(&pool).await.expect("migrate");
    }
    serve_on(db_name, settings, pool.clone().into(), pool).await
}

/// The test cluster when it is the launcher's own (not `DATABASE_URL`).
pub async fn embedded_cluster() -> Option<&'static EmbeddedPg> {
    match tokio::task::spawn_blocking(cluster).await.expect("cluster") {
        Cluster::Embedded(pg) => Some(pg),
        Cluster::Url(..) => None,
    }
}

/// A server on `dbs`; `pool` goes straight to `db_name` for the test's own
/// looks.
pub async fn serve_on(
    db_name: String,
    settings: AppSettings,
    dbs: flashsale::db::Databases,
    pool: PgPool,
) -> TestApp {
    let app = Application::build(
        settings.clone(),
        Secrets {
            jwt: SECRET,
            payment_webhook: WEBHOOK_SECRET,
        },
        dbs,
        Listen {
            host: "127.0.0.1".into(),
            port: 0,
            workers: Some(2),
            handle_signals: false,
        },
    )
    .await
    .expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let stopper = app.stopper();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        pool,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client"),
        jwt: JwtKeys::new(SECRET, settings.access_token_ttl),
        db_name,
        settings,
        stopper,
    }
}

impl TestApp {
    /// A second server process's worth of state (its own pool, board, caches
    /// and queues) on the same database: another instance.
    pub async fn another_instance(&self) -> TestApp {
        start_instance(self.db_name.clone(), self.settings.clone(), false).await
    }

    /// Another instance whose settings `tweak` may change first.
    pub async fn another_instance_with(&self, tweak: impl FnOnce(&mut AppSettings)) -> TestApp {
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        start_instance(self.db_name.clone(), settings, false).await
    }

    /// This test's database as a URL, for server processes started by tests.
    pub async fn database_url(&self) -> String {
        let cluster = tokio::task::spawn_blocking(cluster).await.expect("cluster");
        cluster.url(&self.db_name)
    }

    /// A new pool on this test's database, independent of the server's.
    pub async fn fresh_pool(&self) -> PgPool {
        let cluster = tokio::task::spawn_blocking(cluster).await.expect("cluster");
        PgPool::connect_with(cluster.options(&self.db_name))
            .await
            .expect("connect")
    }
}

/// Reads `status` and the JSON body, whatever the body is.
pub async fn body(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("read the body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Asserts an error answer's status and code; returns the body.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    let (got, v) = body(resp).await;
    assert_eq!(got, status, "status for expected `{code}`; body: {v}");
    assert_eq!(v["error"]["code"], code, "error code; body: {v}");
    assert!(
        v["error"]["message"].is_string(),
        "every error has a message: {v}"
    );
    v
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("POST")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("POST")
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = self.client.patch(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("PATCH")
    }

    /// The database clock.
    pub async fn db_now(&self) -> DateTime<Utc> {
        sqlx::query_scalar("select now()")
            .fetch_one(&self.pool)
            .await
            .expect("now()")
    }

    /// A user with `role`, made in SQL (bcrypt hash of [`PASSWORD`] at cost 4),
    /// and an access token for it.
    pub async fn create_user(&self, role: Role) -> TestUser {
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let hash = bcrypt::hash(PASSWORD, 4).expect("hash");
        let id: i64 = sqlx::query_scalar(
            "insert into app_user (username, email, password_hash, role) values ($1, $1 || '@example.test', $2, $3) returning id",
        )
        .bind(&name)
        .bind(hash)
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .expect("insert user");
        let (token, _) = self.jwt.issue(id, role).expect("token");
        TestUser {
            id,
            username: name,
            token,
        }
    }

    /// `n` customers in one statement, with tokens.
    pub async fn create_customers(&self, n: usize) -> Vec<TestUser> {
        let prefix = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "insert into app_user (username, email, password_hash)
             select $1 || '_' || g, $1 || '_' || g || '@example.test', 'x'
               from generate_series(1, $2) g
             returning id, username",
        )
        .bind(&prefix)
        .bind(n as i32)
        .fetch_all(&self.pool)
        .await
        .expect("insert customers");
        rows.into_iter()
            .map(|(id, username)| TestUser {
                id,
                token: self.jwt.issue(id, Role::Customer).expect("token").0,
                username,
            })
            .collect()
    }

    /// A product listed by a new seller; returns its id.
    pub async fn create_product(&self, price_cents: i64) -> i64 {
        let seller = self.create_user(Role::Seller).await;
        let (status, v) = body(
            self.post(
                "/api/v1/products",
                Some(&seller.token),
                &json!({"name": "A Book", "description": "pages", "price_cents": price_cents}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_i64().expect("product id")
    }

    /// A sale of a new product whose window starts `start_in` seconds from the
    /// database's now and lasts `duration` seconds. Returns the sale JSON.
    pub async fn create_sale(
        &self,
        start_in: i64,
        duration: i64,
        stock: i64,
        per_user_limit: i64,
    ) -> Value {
        let product = self.create_product(2500).await;
        let admin = self.create_user(Role::Admin).await;
        let now = self.db_now().await;
        let starts = now + chrono::Duration::seconds(start_in);
        let ends = starts + chrono::Duration::seconds(duration);
        let (status, v) = body(
            self.post(
                "/api/v1/sales",
                Some(&admin.token),
                &json!({
                    "product_id": product, "starts_at": starts, "ends_at": ends,
                    "stock": stock, "price_cents": 1000, "per_user_limit": per_user_limit,
                    "hold_secs": 0
                }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// A sale that is open now for an hour.
    pub async fn active_sale(&self, stock: i64) -> i64 {
        self.create_sale(-60, 3600, stock, 1).await["id"]
            .as_i64()
            .expect("sale id")
    }

    /// Counts rows with a SQL expression, e.g. `count(*) from purchase_order`.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    /// Stops the server as a signal would (open event streams end, in-flight
    /// requests finish) and closes the pool (the database stays for a look).
    pub async fn stop(self) {
        self.stopper.stop().await;
        self.pool.close().await;
    }
}

impl TestApp {
    /// A product listed by `seller` (a seller or an admin listing for itself);
    /// returns the product JSON.
    pub async fn create_product_by(&self, seller: &TestUser, price_cents: i64) -> Value {
        let (status, v) = body(
            self.post(
                "/api/v1/products",
                Some(&seller.token),
                &json!({"name": "A Book", "description": "pages", "price_cents": price_cents}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// A sale of an existing product whose window starts `start_in` seconds
    /// from the database's now and lasts `duration` seconds, at the product's
    /// own price. Returns the sale JSON.
    pub async fn create_sale_of(
        &self,
        product_id: i64,
        start_in: i64,
        duration: i64,
        stock: i64,
        per_user_limit: i64,
    ) -> Value {
        let admin = self.create_user(Role::Admin).await;
        let starts = self.db_now().await + chrono::Duration::seconds(start_in);
        let ends = starts + chrono::Duration::seconds(duration);
        let (status, v) = body(
            self.post(
                "/api/v1/sales",
                Some(&admin.token),
                &json!({
                    "product_id": product_id, "starts_at": starts, "ends_at": ends,
                    "stock": stock, "per_user_limit": per_user_limit, "hold_secs": 0
                }),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        v
    }

    /// `POST /sales/{sale_id}/purchase` as `user`, with `{"quantity": q}` or,
    /// for `None`, with no body at all.
    pub async fn purchase(
        &self,
        sale_id: i64,
        user: &TestUser,
        quantity: Option<i64>,
    ) -> reqwest::Response {
        let path = format!("/api/v1/sales/{sale_id}/purchase");
        match quantity {
            Some(q) => {
                self.post(&path, Some(&user.token), &json!({"quantity": q}))
                    .await
            }
            None => self
                .client
                .post(self.url(&path))
                .bearer_auth(&user.token)
                .send()
                .await
                .expect("POST"),
        }
    }

    /// A purchase that must succeed; returns the order JSON.
    pub async fn buy(&self, sale_id: i64, user: &TestUser, quantity: i64) -> Value {
        let (status, v) = body(self.purchase(sale_id, user, Some(quantity)).await).await;
        assert_eq!(status, 201, "purchase of {quantity} in sale {sale_id}: {v}");
        v
    }
}

/// The secret the test servers sign access tokens with (to forge tokens
/// signed the same way but with another algorithm).
pub fn jwt_secret() -> &'static [u8] {
    SECRET
}

/// A client that does not follow redirects, to see them.
pub fn client_without_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}
