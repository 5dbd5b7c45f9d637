//! What a run drives: flashsale instances and, when reachable, their database.
//!
//! Self-contained (the default): a private PostgreSQL from the same launcher
//! as `flashsale serve`, and one or more flashsale server processes (this very
//! binary re-run with the hidden `__serve` command, which runs the real
//! server code) on free loopback ports. With `--target` it drives instances
//! that are already running instead.
//!
//! Self-contained, it can also break what it started, for `--chaos`: kill an
//! instance, restart or crash the cluster (the cluster side is in `cluster`).

mod cluster;
mod failover;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flashsale::auth::JwtKeys;
use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg, PgBouncer};

pub use crate::servers::{default_server_env, start_cluster};
use crate::servers::{free_port, random_secret};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub use cluster::ClusterControl;

/// A catalog product stocked for a run, and the units put in: the harness
/// never changes its stock afterwards, so `stock + live catalog units` must
/// stay `put_in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stocked {
    pub id: i64,
    pub put_in: i64,
}

/// The database name used inside the harness's private cluster.
pub const DB_NAME: &str = "flashsale";

/// What stands around the private cluster in the self-contained mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct Topology {
    /// A private PgBouncer in transaction mode lending at most this many
    /// server connections, between the instances and the cluster (their
    /// `LISTEN` goes straight to it, as in production).
    pub pool_size: Option<u32>,
    /// A hot standby streaming from the cluster, for the instances' reads
    /// that tolerate lag (`DATABASE_READ_URL`).
    pub replica: bool,
    /// The standby is synchronous: the cluster acknowledges a commit once
    /// the standby has flushed it.
    pub sync_standby: bool,
}

/// The instances under load and the ways to reach their database.
pub struct Environment {
    /// Base URLs, e.g. `http://127.0.0.1:8080`; requests go round-robin.
    pub targets: Vec<String>,
    /// The shared database, when reachable: provisioning and verification by SQL.
    pub db: Option<PgPool>,
    /// The servers' signing key, when known: buyers' tokens are minted locally.
    pub jwt: Option<JwtKeys>,
    /// Every sale the harness made here, in order (the sampler watches them).
    sales: Arc<Mutex<Vec<i64>>>,
    /// Every catalog product the harness stocked here, in order, with the
    /// units put in (the sampler watches them).
    products: Arc<Mutex<Vec<Stocked>>>,
    /// When the current run's load started (its clock's zero), once it has.
    load_clock: Arc<watch::Sender<Option<Instant>>>,
    embedded: Option<Arc<EmbeddedPg>>,
    /// The PgBouncer in front of it and its pool size (`--pooler`).
    bouncer: Option<(PgBouncer, u32)>,
    /// A hot standby of it that serves the instances' reads (`--replica`),
    /// and whether it is synchronous.
    standby: Option<EmbeddedPg>,
    sync_standby: bool,
    /// Restarts of the embedded cluster (self-contained only).
    cluster: Option<Arc<ClusterControl>>,
    servers: Vec<Child>,
    scratch: Option<PathBuf>,
}

impl Environment {
    /// A private cluster and `instances` fresh server processes, each
    /// `server_exe __serve` (the `stress` binary).
    pub async fn self_contained(
        instances: usize,
        server_env: &[(String, String)],
        server_exe: &std::path::Path,
    ) -> anyhow::Result<Environment> {
        Environment::self_contained_with(instances, server_env, server_exe, Topology::default())
            .await
    }

    /// [`Environment::self_contained`], with the database pieces `topology`
    /// asks for around the cluster.
    pub async fn self_contained_with(
        instances: usize,
        server_env: &[(String, String)],
        server_exe: &std::path::Path,
        topology: Topology,
    ) -> anyhow::Result<Environment> {
        let pool_size = topology.pool_size;
        let scratch = flashsale::embedded_pg::scratch_dir("flashsale-stress")?;
        let pg = start_cluster(scratch.join("db")).await?;
        flashsale::run::create_database(&pg, DB_NAME).await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(pg.connect_options(DB_NAME))
            .await?;
        flashsale::db::migrate(&pool).await?;

        let bouncer = match pool_size {
            Some(n) => Some(PgBouncer::start(&pg, &scratch.join("bouncer"), n).await?),
            None => None,
        };
        let standby = if topology.replica {
            let opts = EmbeddedOptions {
                data_dir: scratch.join("standby"),
                bin_dir: std::env::var_os("PG_BIN_DIR").map(PathBuf::from),
                ephemeral: false,
                max_connections: 300,
            };
            // Blocking for the seconds of a base backup of a new cluster,
            // before anything else runs.
            Some(EmbeddedPg::start_standby(&pg, &opts)?)
        } else {
            None
        };
        if let (Some(_), true) = (&standby, topology.sync_standby) {
            failover::make_synchronous(&pool).await?;
        }
        let mut db_env: Vec<(&str, String)> = match (&bouncer, &standby) {
            (Some(b), _) => vec![
                ("DATABASE_URL", b.url(DB_NAME)),
                ("DATABASE_POOLER", "transaction".into()),
                ("DATABASE_LISTEN_URL", pg.url(DB_NAME)),
            ],
            // Both hosts: the instances follow whichever accepts writes.
            (None, Some(s)) => vec![("DATABASE_URL", failover::both_hosts(&pg, s))],
            (None, None) => vec![("DATABASE_URL", pg.url(DB_NAME))],
        };
        if let Some(standby) = &standby {
            db_env.push(("DATABASE_READ_URL", standby.url(DB_NAME)));
        }
        let secret = random_secret();
        let webhook_secret = random_secret();
        let mut servers = Vec::new();
        let mut targets = Vec::new();
        for i in 0..instances {
            let port = free_port()?;
            let log = std::fs::File::create(scratch.join(format!("server-{i}.log")))?;
            let mut cmd = Command::new(server_exe);
            cmd.arg("__serve")
                .envs(server_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .envs(db_env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("JWT_SECRET", &secret)
                .env("PAYMENT_WEBHOOK_SECRET", &webhook_secret)
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            servers.push(cmd.spawn().context("starting a flashsale server")?);
            targets.push(format!("http://127.0.0.1:{port}"));
        }
        let env = Environment {
            targets,
            db: Some(pool),
            jwt: Some(JwtKeys::new(secret.as_bytes(), Duration::from_secs(3600))),
            sales: Arc::default(),
            products: Arc::default(),
            load_clock: Arc::new(watch::channel(None).0),
            cluster: Some(Arc::new(ClusterControl::new(pg.data_dir())?)),
            embedded: Some(Arc::new(pg)),
            bouncer: bouncer.map(|b| (b, pool_size.unwrap_or(0))),
            sync_standby: standby.is_some() && topology.sync_standby,
            standby,
            servers,
            scratch: Some(scratch),
        };
        env.wait_ready(Duration::from_secs(60)).await?;
        Ok(env)
    }

    /// Instances that already run; `database_url` and `jwt_secret` are optional.
    pub async fn external(
        targets: Vec<String>,
        database_url: Option<&str>,
        jwt_secret: Option<&str>,
    ) -> anyhow::Result<Environment> {
        for t in &targets {
            let host = t
                .trim_start_matches("http://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default();
            let local = host == "localhost"
                || host.starts_with("127.")
                || host == "[::1]"
                || t.starts_with("http://[::1]");
            if !local {
                bail!("--target {t}: the harness only sends load to loopback addresses (127.0.0.0/8, ::1, localhost)");
            }
        }
        let db = match database_url {
            Some(url) => Some(
                PgPoolOptions::new()
                    .max_connections(8)
                    .connect(url)
                    .await
                    .context("cannot connect to --database-url")?,
            ),
            None => None,
        };
        let env = Environment {
            targets: targets
                .into_iter()
                .map(|t| t.trim_end_matches('/').to_string())
                .collect(),
            db,
            jwt: jwt_secret.map(|s| JwtKeys::new(s.as_bytes(), Duration::from_secs(3600))),
            sales: Arc::default(),
            products: Arc::default(),
            load_clock: Arc::new(watch::channel(None).0),
            cluster: None,
            embedded: None,
            bouncer: None,
            standby: None,
            sync_standby: false,
            servers: Vec::new(),
            scratch: None,
        };
        env.wait_ready(Duration::from_secs(10)).await?;
        Ok(env)
    }

    async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + limit;
        for t in &self.targets {
            loop {
                let ok = client
                    .get(format!("{t}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{t} did not become ready{}", self.server_log_hint());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    fn server_log_hint(&self) -> String {
        match &self.scratch {
            Some(dir) => format!(" (see the logs in {})", dir.display()),
            None => String::new(),
        }
    }

    /// Notes a sale the harness made.
    pub fn note_sale(&self, id: i64) {
        self.sales
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
    }

    /// The sales made so far, shared: it grows as the harness makes more.
    pub fn sales_made(&self) -> Arc<Mutex<Vec<i64>>> {
        self.sales.clone()
    }

    /// Notes a catalog product the harness stocked with `put_in` units.
    pub fn note_product(&self, id: i64, put_in: i64) {
        self.products
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Stocked { id, put_in });
    }

    /// The catalog products stocked so far, shared like [`Self::sales_made`].
    pub fn products_made(&self) -> Arc<Mutex<Vec<Stocked>>> {
        self.products.clone()
    }

    /// The clock a run's load announces its start on (see `Load::for_env`).
    pub fn load_clock(&self) -> Arc<watch::Sender<Option<Instant>>> {
        self.load_clock.clone()
    }

    /// Whether the harness started the instances and the cluster itself (and
    /// so may break them).
    pub fn is_self_contained(&self) -> bool {
        self.embedded.is_some()
    }

    /// SIGKILL to instance `i` (self-contained only). Its requests in flight
    /// are cut; new connections to it are refused.
    pub fn kill_instance(&self, i: usize) -> anyhow::Result<()> {
        let Some(pid) = self.servers.get(i).and_then(|s| s.id()) else {
            bail!("no running instance {i} to kill");
        };
        // SAFETY: kill(2) on a child of ours that is not reaped yet (the
        // Child is held until shutdown), so the pid is still its own.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
            bail!(
                "cannot SIGKILL instance {i}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Fast-restarts (`crash: false`) or crashes and starts again (`crash:
    /// true`) the private cluster, returning once pg_ctl saw it ready.
    pub async fn restart_db(&self, crash: bool) -> anyhow::Result<()> {
        let Some(c) = self.cluster.clone() else {
            bail!("only a self-contained run can restart its PostgreSQL");
        };
        tokio::task::spawn_blocking(move || {
            if crash {
                c.crash_and_start()
            } else {
                c.fast_restart()
            }
        })
        .await?
    }

    /// How to open a fresh connection to the run's database (self-contained
    /// only): the probe that tells when PostgreSQL accepts connections again.
    pub fn probe_options(&self) -> Option<PgConnectOptions> {
        self.embedded.as_ref().map(|pg| pg.connect_options(DB_NAME))
    }

    /// The server logs of the private cluster (self-contained only).
    pub fn db_logs(&self) -> Vec<PathBuf> {
        self.cluster
            .as_ref()
            .map(|c| c.logs().to_vec())
            .unwrap_or_default()
    }

    /// Where the database lives, for the report.
    pub fn describe(&self) -> String {
        let replica = match (&self.standby, self.sync_standby) {
            (Some(_), true) => ", with a synchronous streaming replica for reads",
            (Some(_), false) => ", with a streaming replica for reads",
            (None, _) => "",
        };
        let what = match (&self.embedded, &self.bouncer) {
            (Some(_), Some((_, n))) => format!(
                "{} self-started instance(s) behind PgBouncer (transaction mode, pool of {n}) on a private PostgreSQL",
                self.targets.len()
            ),
            (Some(_), None) => format!(
                "{} self-started instance(s) on a private PostgreSQL",
                self.targets.len()
            ),
            (None, _) => format!("{} running instance(s)", self.targets.len()),
        };
        format!("{what}{replica}")
    }

    /// Whether a hot standby serves the instances' reads.
    pub fn has_replica(&self) -> bool {
        self.standby.is_some()
    }

    /// The pool size of the PgBouncer in front of the cluster, if any.
    pub fn pooler_pool_size(&self) -> Option<u32> {
        self.bouncer.as_ref().map(|(_, n)| *n)
    }

    /// Stops the servers gracefully (SIGTERM), then the cluster, and removes
    /// the scratch directory.
    pub async fn shutdown(mut self) {
        for s in &mut self.servers {
            if let Some(pid) = s.id() {
                // SAFETY: kill(2) on a child we started; SIGTERM asks for a
                // graceful stop.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for s in &mut self.servers {
            if tokio::time::timeout(Duration::from_secs(30), s.wait())
                .await
                .is_err()
            {
                let _ = s.kill().await;
            }
        }
        if let Some(pool) = self.db.take() {
            pool.close().await;
        }
        drop(self.bouncer.take());
        if let Some(standby) = self.standby.take() {
            let _ = tokio::task::spawn_blocking(move || drop(standby)).await;
        }
        if let Some(c) = self.cluster.take() {
            let _ = tokio::task::spawn_blocking(move || c.stop_if_restarted()).await;
        }
        if let Some(pg) = self.embedded.take() {
            let _ = tokio::task::spawn_blocking(move || drop(pg)).await;
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
