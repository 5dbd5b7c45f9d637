//! A private PgBouncer in front of a private cluster, in transaction-pooling
//! mode as production runs it: for the test suite and the stress harness.
//!
//! PgBouncer logs in to PostgreSQL as a role of its own ([`POOL_ROLE`]), so
//! `pg_stat_activity` tells its server connections from everything that goes
//! straight to the cluster. Clients log in as [`SUPERUSER`] without a password
//! (loopback only; the cluster behind it keeps its own). Like the cluster,
//! the child runs as the `postgres` user when this process is root and goes
//! down with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use super::{chown, free_port, io, spawn_bound, tail, unprivileged_user};
use super::{EmbeddedError, EmbeddedPg, SUPERUSER};

/// The role PgBouncer's server connections log in as.
pub const POOL_ROLE: &str = "flashsale_pooler";

/// A running PgBouncer.
pub struct PgBouncer {
    port: u16,
    pid: i32,
    exited: Mutex<Option<mpsc::Receiver<()>>>,
    log_path: PathBuf,
}

impl PgBouncer {
    /// The `pgbouncer` program, if installed (Debian puts it in /usr/sbin).
    pub fn program() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        on_path
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join("pgbouncer"))
            .find(|p| p.is_file())
    }

    /// Starts PgBouncer in `dir` (made if missing) in front of every database
    /// of `pg`, lending at most `pool_size` server connections in all.
    pub async fn start(
        pg: &EmbeddedPg,
        dir: &Path,
        pool_size: u32,
    ) -> Result<PgBouncer, EmbeddedError> {
        let program = PgBouncer::program().ok_or_else(|| {
            EmbeddedError::Failed(
                "pgbouncer is not installed (Debian: apt-get install pgbouncer)".into(),
            )
        })?;
        let password = pool_role(pg).await?;
        let run_as = unprivileged_user()?;
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let port = free_port()?;
        let log_path = dir.join("pgbouncer.log");
        let users = dir.join("users.txt");
        fs::write(&users, format!("\"{SUPERUSER}\" \"\"\n")).map_err(io("writing users.txt"))?;
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]
* = host=127.0.0.1 port={pg_port} user={POOL_ROLE} password={password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {pool_size}
max_db_connections = {pool_size}
max_client_conn = 5000
logfile = {log}
",
                pg_port = pg.port(),
                users = users.display(),
                log = log_path.display(),
            ),
        )
        .map_err(io("writing pgbouncer.ini"))?;
        if let Some(user) = &run_as {
            for p in [dir, &users, &ini] {
                chown(p, user)?;
            }
        }
        let mut cmd = Command::new(program);
        cmd.arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (pid, exited) = spawn_bound(cmd, run_as.as_ref())?;
        let bouncer = PgBouncer {
            port,
            pid,
            exited: Mutex::new(Some(exited)),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(EmbeddedError::Failed(format!(
                    "pgbouncer did not start listening: {}",
                    tail(&bouncer.log_path, 10)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(bouncer)
    }

    /// Connection options for `database` through the pooler.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
    }

    /// A `postgres://` URL for `database` through the pooler.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops it at once (open client connections are cut).
    pub fn stop(&self) {
        let Ok(mut guard) = self.exited.lock() else {
            return;
        };
        let Some(rx) = guard.take() else { return };
        // SAFETY: kill(2) with a pid we started; no memory is touched.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes [`POOL_ROLE`] unless it exists, with the cluster's own password
/// (every PgBouncer started on one cluster logs in alike); returns it.
async fn pool_role(pg: &EmbeddedPg) -> Result<String, EmbeddedError> {
    let failed = |e: sqlx::Error| EmbeddedError::Failed(format!("making the pooler's role: {e}"));
    let password = pg.password.clone();
    let mut conn = sqlx::PgConnection::connect_with(&pg.connect_options("postgres"))
        .await
        .map_err(failed)?;
    // The role owns nothing and may do what the application's role does.
    // Two starts at once may both try to make it: the second finds it.
    sqlx::raw_sql(&format!(
        "do $$ begin
           create role {POOL_ROLE} login superuser password '{password}';
         exception when duplicate_object then null;
         end $$"
    ))
    .execute(&mut conn)
    .await
    .map_err(failed)?;
    conn.close().await.ok();
    Ok(password)
}
