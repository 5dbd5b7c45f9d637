//! The database: the connection pool, migrations, the clock, and one module
//! per resource holding its types and its SQL, named like its route.
//!
//! The purchase engine keeps the SQL of its locked transaction beside it in
//! [`crate::purchase`], auth the SQL of accounts and tokens in
//! [`crate::auth`], the outbox its own in [`crate::email`].

pub mod cart;
pub mod catalog;
pub mod failover;
pub mod idempotency;
pub mod orders;
pub mod payments;
mod pool;
pub mod products;
pub mod queue;
pub mod replica;
pub mod sales;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgExecutor, PgPool};

use failover::Follower;
pub use pool::Db;

use crate::config::AppSettings;

/// Opens a pool with explicit limits: a full pool makes callers wait at most
/// `db_acquire_timeout`, then they get `busy`. Behind a transaction-mode
/// pooler when `pooled` (see [`Db`]).
pub async fn connect(
    options: PgConnectOptions,
    settings: &AppSettings,
    pooled: bool,
) -> Result<Db, sqlx::Error> {
    open(options, settings, pooled, None).await
}

/// [`connect`] to the host `follower` points at, and re-pointed by it when
/// another host becomes the primary (see [`failover`]).
pub async fn connect_following(
    follower: &Arc<Follower>,
    settings: &AppSettings,
    pooled: bool,
) -> Result<Db, sqlx::Error> {
    open(follower.current(), settings, pooled, Some(follower)).await
}

async fn open(
    options: PgConnectOptions,
    settings: &AppSettings,
    pooled: bool,
    follower: Option<&Arc<Follower>>,
) -> Result<Db, sqlx::Error> {
    let pool = Db::drop_stale(pool_options(settings), follower)
        .min_connections(1.min(settings.db_max_connections))
        .connect_with(Db::shape(options, pooled))
        .await?;
    let db = Db::new(pool, pooled);
    Ok(match follower {
        Some(f) => db.following(Arc::clone(f)),
        None => db,
    })
}

fn pool_options(settings: &AppSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .acquire_timeout(settings.db_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(false)
}

/// Where the engine reaches PostgreSQL.
#[derive(Clone, Debug)]
pub struct Databases {
    /// The primary, perhaps through a pooler: every read and write.
    pub primary: Db,
    /// Straight to the primary: the `LISTEN` connection, whose subscriptions
    /// are session state.
    pub listen: PgConnectOptions,
    /// What re-points the `LISTEN` connection after a failover, when its URL
    /// names hosts to follow.
    pub listen_follower: Option<Arc<Follower>>,
    /// A streaming replica for reads that tolerate lag, and how far behind
    /// it may be (see [`replica`]).
    pub read: Option<(Db, Duration)>,
}

impl From<PgPool> for Databases {
    /// One pool straight to the primary, for everything.
    fn from(pool: PgPool) -> Databases {
        Databases {
            listen: (*pool.connect_options()).clone(),
            primary: Db::direct(pool),
            listen_follower: None,
            read: None,
        }
    }
}

/// [`connect`], but opening connections only when they are asked for: a
/// replica that is down at start-up does not stop the server.
pub fn connect_lazy(options: PgConnectOptions, settings: &AppSettings, pooled: bool) -> Db {
    let pool = pool_options(settings).connect_lazy_with(Db::shape(options, pooled));
    Db::new(pool, pooled)
}

/// Applies the migrations in `migrations/` (embedded at build time). Their
/// lock is a session advisory lock: `pool` goes straight to PostgreSQL, never
/// through a transaction-mode pooler.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// Whether the database answers (readiness).
pub async fn ping(pool: &Db) -> Result<(), sqlx::Error> {
    sqlx::query("select 1").execute(pool).await.map(|_| ())
}

/// The database clock, which every rule about time goes by.
pub async fn now(pool: &Db) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("select now()").fetch_one(pool).await
}

/// Sends `payload` on `channel` to every listening instance; inside a
/// transaction, when it commits. Each channel has one announcer, in the module
/// that owns it, which calls this.
pub async fn notify(
    conn: impl PgExecutor<'_>,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Takes or renews the lease `name` for `holder` until `ttl` from now (by the
/// database clock): `true` when `holder` has it, `false` when another holder's
/// lease still runs. One statement, so it needs no session state.
pub async fn take_lease(
    pool: &Db,
    name: &str,
    holder: uuid::Uuid,
    ttl: Duration,
) -> Result<bool, sqlx::Error> {
    let taken: Option<bool> = sqlx::query_scalar(
        "insert into lease (name, holder, until) values ($1, $2, now() + make_interval(secs => $3))
         on conflict (name) do update set holder = excluded.holder, until = excluded.until
          where lease.holder = excluded.holder or lease.until < now()
         returning true",
    )
    .bind(name)
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(taken.unwrap_or(false))
}
