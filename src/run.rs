//! The `flashsale` command: `serve` (default), `migrate`, `seed`.
//!
//! Picks the database (the operator's `DATABASE_URL`, or the embedded private
//! cluster), migrates it, and runs the chosen command.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use sqlx::postgres::PgConnectOptions;

use crate::config::{Config, DatabaseSource, ExposeSecret};
use crate::db::failover::{split_hosts, Follower};
use crate::db::Databases;
use crate::embedded_pg::{EmbeddedOptions, EmbeddedPg};
use crate::startup::{Application, Listen, Secrets};

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Serve,
    Migrate,
    Seed,
}

impl Command {
    /// Parses the first argument; `None` for `--help` or an unknown word.
    pub fn parse(arg: Option<&str>) -> Option<Command> {
        match arg {
            None | Some("serve") => Some(Command::Serve),
            Some("migrate") => Some(Command::Migrate),
            Some("seed") => Some(Command::Seed),
            _ => None,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "usage: flashsale [serve|migrate|seed]

  serve    run the HTTP server (default); without DATABASE_URL it starts a
           private PostgreSQL in FLASHSALE_DATA_DIR and loads demo data once
  migrate  apply database migrations and exit
  seed     load the demo data (also against DATABASE_URL) and exit

Configuration is read from environment variables; see README.md.";

/// The database name used inside the embedded cluster.
const EMBEDDED_DB: &str = "flashsale";

/// A database ready for use, and the cluster behind it when embedded.
struct Database {
    dbs: Databases,
    embedded: Option<Arc<EmbeddedPg>>,
    jwt_secret: Vec<u8>,
    webhook_secret: Vec<u8>,
}

/// Runs a command to completion.
pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let db = open_database(&config).await?;
    let result = run_with(command, &config, &db).await;
    db.dbs.primary.close().await;
    if let Some(pg) = db.embedded {
        tokio::task::spawn_blocking(move || pg.stop()).await.ok();
        tracing::info!("embedded PostgreSQL stopped");
    }
    result
}

async fn run_with(command: Command, config: &Config, db: &Database) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            // Embedded: the password kept beside the cluster. Otherwise a
            // new one, shown once and stored nowhere but as its hash.
            let admin = match &db.embedded {
                Some(pg) => load_or_create_secret(&pg.data_dir().join(ADMIN_PASSWORD_FILE), 12)?,
                None => random_hex(12),
            };
            let report = crate::seed::load(&db.dbs.primary, config.app.bcrypt_cost, &admin).await?;
            if report.loaded {
                println!("demo data loaded");
                print_accounts(&report, Some(&admin));
            } else {
                println!("demo data already present; nothing written");
                print_accounts(&report, None);
            }
            Ok(())
        }
        Command::Serve => {
            if db.embedded.is_some() {
                let users: i64 = sqlx::query_scalar("select count(*) from app_user")
                    .fetch_one(&db.dbs.primary)
                    .await?;
                if users == 0 {
                    let admin = db.admin_password()?.unwrap_or_default();
                    let report =
                        crate::seed::load(&db.dbs.primary, config.app.bcrypt_cost, &admin).await?;
                    tracing::info!(loaded = report.loaded, "demo data");
                }
            }
            let app = Application::build(
                config.app.clone(),
                Secrets {
                    jwt: &db.jwt_secret,
                    payment_webhook: &db.webhook_secret,
                },
                db.dbs.clone(),
                Listen {
                    host: config.host.clone(),
                    port: config.port,
                    workers: config.workers,
                    handle_signals: true,
                },
            )
            .await?;
            let url = format!("http://{}:{}", config.host, app.port());
            println!("flashsale is serving on {url}  (API docs: {url}/docs)");
            if let Some(pg) = &db.embedded {
                println!("embedded PostgreSQL: data in {}", pg.data_dir().display());
                print_accounts(
                    &crate::seed::demo_accounts()?,
                    db.admin_password()?.as_deref(),
                );
                println!(
                    "  (the admin password is kept in {})",
                    pg.data_dir().join(ADMIN_PASSWORD_FILE).display()
                );
            }
            println!("press Ctrl-C to stop");
            app.run_until_stopped()
                .await
                .context("the HTTP server failed")?;
            tracing::info!("HTTP server stopped");
            Ok(())
        }
    }
}

fn print_accounts(report: &crate::seed::SeedReport, admin_password: Option<&str>) {
    println!(
        "demo accounts: {} (password {})",
        report.usernames.join(", "),
        report.password
    );
    match admin_password {
        Some(p) => println!("demo admin: {} (password {p})", crate::seed::ADMIN),
        None => println!(
            "demo admin: {} (with the password it was given when seeded)",
            crate::seed::ADMIN
        ),
    }
}

/// Where the embedded mode keeps the demo admin's generated password.
const ADMIN_PASSWORD_FILE: &str = "admin-password";

impl Database {
    /// The embedded demo admin's password (generated on first use and kept
    /// beside the cluster); `None` against `DATABASE_URL`.
    fn admin_password(&self) -> anyhow::Result<Option<String>> {
        match &self.embedded {
            Some(pg) => Ok(Some(load_or_create_secret(
                &pg.data_dir().join(ADMIN_PASSWORD_FILE),
                12,
            )?)),
            None => Ok(None),
        }
    }
}

async fn open_database(config: &Config) -> anyhow::Result<Database> {
    match &config.database {
        DatabaseSource::Url(urls) => {
            let (options, follower) = target(urls.primary.expose_secret(), "DATABASE_URL").await?;
            let (listen, listen_follower, named) = match &urls.listen {
                Some(url) => {
                    let (o, f) = target(url.expose_secret(), "DATABASE_LISTEN_URL").await?;
                    (o, f, "DATABASE_LISTEN_URL")
                }
                None => (options.clone(), follower.clone(), "DATABASE_URL"),
            };
            migrate_on(&listen, named, &config.app).await?;
            let primary = match &follower {
                Some(f) => crate::db::connect_following(f, &config.app, urls.pooled).await,
                None => crate::db::connect(options, &config.app, urls.pooled).await,
            }
            .context("cannot connect to DATABASE_URL")?;
            let read = match &urls.read {
                Some(url) => Some((
                    crate::db::connect_lazy(
                        PgConnectOptions::from_str(url.expose_secret())
                            .context("DATABASE_READ_URL is not a valid PostgreSQL URL")?,
                        &config.app,
                        urls.pooled,
                    ),
                    urls.read_max_lag,
                )),
                None => None,
            };
            let secret = config
                .jwt_secret
                .as_ref()
                .context("JWT_SECRET is required with DATABASE_URL")?;
            let webhook = config
                .payment_webhook_secret
                .as_ref()
                .context("PAYMENT_WEBHOOK_SECRET is required with DATABASE_URL")?;
            Ok(Database {
                dbs: Databases {
                    primary,
                    listen,
                    listen_follower,
                    read,
                },
                embedded: None,
                jwt_secret: secret.expose_secret().as_bytes().to_vec(),
                webhook_secret: webhook.expose_secret().as_bytes().to_vec(),
            })
        }
        DatabaseSource::Embedded { data_dir } => {
            let opts = EmbeddedOptions {
                data_dir: data_dir.clone(),
                bin_dir: config.pg_bin_dir.clone(),
                ephemeral: false,
                max_connections: 100,
            };
            println!("starting the embedded PostgreSQL in {}", data_dir.display());
            let pg = tokio::task::spawn_blocking(move || EmbeddedPg::start(&opts))
                .await
                .context("the PostgreSQL launcher failed")??;
            let pg = Arc::new(pg);
            create_database(&pg, EMBEDDED_DB).await?;
            let listen = pg.connect_options(EMBEDDED_DB);
            migrate_on(&listen, "the embedded PostgreSQL", &config.app).await?;
            let primary = crate::db::connect(listen.clone(), &config.app, false)
                .await
                .context("cannot connect to the embedded PostgreSQL")?;
            let secret = match &config.jwt_secret {
                Some(s) => s.expose_secret().as_bytes().to_vec(),
                None => load_or_create_secret(&pg.data_dir().join("jwt-secret"), 32)?.into_bytes(),
            };
            let webhook_secret = match &config.payment_webhook_secret {
                Some(s) => s.expose_secret().as_bytes().to_vec(),
                None => load_or_create_secret(&pg.data_dir().join("payment-webhook-secret"), 32)?
                    .into_bytes(),
            };
            Ok(Database {
                dbs: Databases {
                    primary,
                    listen,
                    listen_follower: None,
                    read: None,
                },
                embedded: Some(pg),
                jwt_secret: secret,
                webhook_secret,
            })
        }
    }
}

/// The options of `url` (the variable `named`), and when it names hosts to
/// follow (see [`crate::db::failover`]), the follower pointing at the one
/// that accepts writes.
async fn target(
    url: &str,
    named: &str,
) -> anyhow::Result<(PgConnectOptions, Option<Arc<Follower>>)> {
    let invalid = || format!("{named} is not a valid PostgreSQL URL");
    let Some(urls) = split_hosts(url).map_err(|e| anyhow::anyhow!("{named}: {e}"))? else {
        return Ok((PgConnectOptions::from_str(url).with_context(invalid)?, None));
    };
    let hosts = urls
        .iter()
        .map(|u| PgConnectOptions::from_str(u))
        .collect::<Result<Vec<_>, _>>()
        .with_context(invalid)?;
    let follower = Follower::find(hosts)
        .await
        .map_err(|e| anyhow::anyhow!("{named}: {e}"))?;
    Ok((follower.current(), Some(follower)))
}

/// Applies the migrations over one connection straight to the primary (their
/// lock is session state, which a pooler would not keep); `named` is where
/// the options came from, for the error.
async fn migrate_on(
    options: &PgConnectOptions,
    named: &str,
    settings: &crate::config::AppSettings,
) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.db_acquire_timeout)
        .connect_with(options.clone())
        .await
        .with_context(|| format!("cannot connect to {named}"))?;
    let migrated = crate::db::migrate(&pool)
        .await
        .context("migrating the database");
    pool.close().await;
    migrated
}

/// Creates `name` in the cluster unless it exists.
pub async fn create_database(pg: &EmbeddedPg, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&pg.connect_options("postgres"))
        .await
        .context("cannot connect to the embedded PostgreSQL")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await.ok();
    Ok(())
}

/// A secret of the embedded mode (the JWT key, the webhook key, the demo
/// admin's password):
/// `bytes` random bytes as hex, generated once and kept beside the cluster
/// (mode 0600), so it survives restarts.
fn load_or_create_secret(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(s) = fs::read_to_string(path) {
        let s = s.trim().to_string();
        if s.len() >= bytes * 2 {
            return Ok(s);
        }
    }
    let secret = random_hex(bytes);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(secret)
}

/// `bytes` random bytes from the OS, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
