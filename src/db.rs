//! The connection pool and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::AppSettings;

/// Opens a pool with explicit limits: a full pool makes callers wait at most
/// `db_acquire_timeout`, then they get `busy`.
pub async fn connect(
    options: PgConnectOptions,
    settings: &AppSettings,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .min_connections(1.min(settings.db_max_connections))
        .acquire_timeout(settings.db_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(false)
        .connect_with(options.application_name("flashsale"))
        .await
}

/// Applies the migrations in `migrations/` (embedded at build time).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
