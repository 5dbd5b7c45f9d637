//! A hot standby of a private cluster, streaming from it: made by
//! `pg_basebackup -R` and started read-only. For the test suite and the
//! stress harness (a replica for reads, and a failover: the primary stopped
//! at once, the standby promoted).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cluster::chown;
use super::{io, launch, Dirs, EmbeddedError, EmbeddedOptions, EmbeddedPg, SUPERUSER};

impl EmbeddedPg {
    /// Copies `primary` into `opts.data_dir` (which must hold no cluster
    /// yet) and starts the copy as a hot standby that streams from it.
    /// Blocking, like [`EmbeddedPg::start`].
    pub fn start_standby(
        primary: &EmbeddedPg,
        opts: &EmbeddedOptions,
    ) -> Result<EmbeddedPg, EmbeddedError> {
        let Dirs {
            bin,
            run_as,
            data_dir,
            pgdata,
            run_dir,
        } = Dirs::make(opts)?;
        // pg_basebackup, run as that user, makes `pgdata` inside.
        if let Some(user) = &run_as {
            chown(&data_dir, user)?;
        }
        // -R writes standby.signal and the primary's connection, password
        // included, into postgresql.auto.conf.
        let conninfo = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={}",
            primary.port, primary.password
        );
        // Beside `postgres`, or beside what a symlink to it points at.
        let basebackup = [
            bin.join("postgres"),
            bin.join("postgres").canonicalize().unwrap_or_default(),
        ]
        .iter()
        .filter_map(|p| p.parent().map(|d| d.join("pg_basebackup")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            EmbeddedError::Failed(format!("no pg_basebackup beside {}", bin.display()))
        })?;
        let mut cmd = Command::new(basebackup);
        cmd.arg("-D")
            .arg(&pgdata)
            .args(["-R", "-X", "stream", "-c", "fast", "-d", &conninfo])
            .stdin(Stdio::null());
        if let Some(user) = &run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &data_dir);
        }
        let out = cmd.output().map_err(io("running pg_basebackup"))?;
        if !out.status.success() {
            return Err(EmbeddedError::Failed(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let password_file = data_dir.join("pg-password");
        fs::write(&password_file, &primary.password).map_err(io("saving the password"))?;
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
            .map_err(io("restricting the password file"))?;
        launch(
            &bin,
            data_dir,
            run_dir,
            primary.password.clone(),
            run_as,
            opts,
        )
    }
}

impl EmbeddedPg {
    /// Immediate shutdown (SIGQUIT to the postmaster): every server process
    /// quits at once, as in a crash, without a checkpoint and without
    /// sending a standby the WAL not sent yet. Blocking, up to 10 s.
    pub fn stop_immediately(&self) {
        let Ok(mut guard) = self.exited.lock() else {
            return;
        };
        let Some(rx) = guard.take() else { return };
        // SAFETY: kill(2) with a pid we started; no memory is touched.
        unsafe {
            libc::kill(self.pid, libc::SIGQUIT);
        }
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }

    /// Promotes this standby (`pg_promote`), returning once it accepts
    /// writes.
    pub async fn promote(&self) -> Result<(), sqlx::Error> {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = self.connect_options("postgres").connect().await?;
        let promoted: bool = sqlx::query_scalar("select pg_promote(true, 60)")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        if promoted {
            Ok(())
        } else {
            Err(sqlx::Error::Protocol(
                "the standby was not promoted within 60 s".into(),
            ))
        }
    }
}

/// Makes every standby of the primary `pool` reaches synchronous
/// (`synchronous_standby_names = '*'`) and `database` wait for it
/// (`synchronous_commit = on`, set on the database: a private cluster made
/// `ephemeral` runs with it off on its command line, which only a
/// database's or a role's setting overrides). A commit in `database` is
/// then acknowledged once a standby has flushed it, for sessions opened
/// from now on. Returns once a standby streams as synchronous (within 30 s).
pub async fn make_synchronous(pool: &sqlx::PgPool, database: &str) -> Result<(), sqlx::Error> {
    sqlx::query("alter system set synchronous_standby_names = '*'")
        .execute(pool)
        .await?;
    sqlx::query("select pg_reload_conf()").execute(pool).await?;
    let quoted = database.replace('"', "\"\"");
    sqlx::query(&format!(
        "alter database \"{quoted}\" set synchronous_commit = on"
    ))
    .execute(pool)
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let sync: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_replication where sync_state = 'sync'",
        )
        .fetch_one(pool)
        .await?;
        if sync > 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(sqlx::Error::Protocol(
                "no standby became synchronous within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
