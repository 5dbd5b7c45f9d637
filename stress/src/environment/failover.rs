//! The standby as a failover target (`--replica`, `--sync-standby`,
//! `--chaos failover`): the instances are given both hosts, libpq style, and
//! follow the one that accepts writes; a failover stops the primary at once
//! and promotes the standby, and the harness's own pool follows it too, so
//! the verification reads what the promoted standby holds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flashsale::embedded_pg::EmbeddedPg;
use sqlx::PgPool;

use super::{Environment, DB_NAME};

/// The instances' `DATABASE_URL` naming the primary and then the standby.
pub(super) fn both_hosts(primary: &EmbeddedPg, standby: &EmbeddedPg) -> String {
    let one = format!("127.0.0.1:{}", primary.port());
    let both = format!("{one},127.0.0.1:{}", standby.port());
    format!(
        "{}?target_session_attrs=read-write",
        primary.url(DB_NAME).replacen(&one, &both, 1)
    )
}

/// Makes every standby of `primary` synchronous (`synchronous_standby_names
/// = '*'`) and the run's database wait for it (`synchronous_commit = on`,
/// set on the database: the private cluster runs with it off on its command
/// line, which only a database's or a role's setting overrides). A commit is
/// then acknowledged once a standby has flushed it. Waits until one streams
/// as such; sessions opened before keep their old setting.
pub(super) async fn make_synchronous(primary: &PgPool) -> anyhow::Result<()> {
    flashsale::embedded_pg::make_synchronous(primary, DB_NAME)
        .await
        .context("making the standby synchronous")
}

impl Environment {
    /// Whether a failover can be carried out: a standby to promote, and no
    /// pooler (which would need re-pointing itself).
    pub fn can_fail_over(&self) -> bool {
        self.standby.is_some() && self.bouncer.is_none()
    }

    /// Whether the standby is synchronous (`--sync-standby`).
    pub fn standby_is_sync(&self) -> bool {
        self.sync_standby
    }

    /// Stops the primary at once (`pg_ctl stop -m immediate`: what it had
    /// not sent the standby yet is gone, as in a crash), promotes the
    /// standby, and points the harness's own pool at it; returns once it
    /// accepts writes.
    pub async fn fail_over(&self) -> anyhow::Result<()> {
        let (Some(primary), Some(promoted), Some(db)) = (&self.embedded, &self.standby, &self.db)
        else {
            bail!("a failover needs the private cluster, its standby and the database");
        };
        let primary = std::sync::Arc::clone(primary);
        tokio::task::spawn_blocking(move || primary.stop_immediately()).await?;
        promoted.promote().await.context("promoting the standby")?;
        // Connections to the old primary fail their ping and are dropped.
        db.set_connect_options(promoted.connect_options(DB_NAME));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let standby: Result<bool, _> = sqlx::query_scalar("select pg_is_in_recovery()")
                .fetch_one(db)
                .await;
            if let Ok(false) = standby {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the promoted standby did not accept writes within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
