//! `ceiling`: PostgreSQL's own ceiling for purchases of one hot row, with no
//! HTTP and no flashsale in the way.
//!
//! pgbench drives a private cluster started like the harness's (durable,
//! fsync on), one strategy after the other, each for the same time with the
//! same number of clients:
//!
//! - `per_purchase_txn`: one purchase per interactive transaction (lock,
//!   insert, update, commit), what `PURCHASE_MODE=per_purchase` does;
//! - `single_statement`: one purchase per transaction in a single statement,
//!   the fastest one buyer per transaction can go;
//! - `batch64`: 64 purchases per transaction, the combined engine's way.
//!
//! The scripts are in `stress/ceiling/`. Every buyer id is unique, so no
//! order is refused by the one-order-per-buyer key, and afterwards the hot
//! row's `remaining` plus its orders must equal the stock it started with.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use sqlx::Connection;

use crate::environment::start_cluster;

const SETUP: &str = include_str!("../ceiling/setup.sql");

/// One way of selling from the hot row.
pub struct Strategy {
    pub name: &'static str,
    /// The pgbench script of one transaction.
    pub script: &'static str,
    pub purchases_per_transaction: u64,
}

/// The strategies, in the order they run.
pub const STRATEGIES: [Strategy; 3] = [
    Strategy {
        name: "per_purchase_txn",
        script: include_str!("../ceiling/per_purchase_txn.sql"),
        purchases_per_transaction: 1,
    },
    Strategy {
        name: "single_statement",
        script: include_str!("../ceiling/single_statement.sql"),
        purchases_per_transaction: 1,
    },
    Strategy {
        name: "batch64",
        script: include_str!("../ceiling/batch64.sql"),
        purchases_per_transaction: 64,
    },
];

/// How long and how hard each strategy is driven.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds per strategy.
    pub seconds: u64,
    /// pgbench clients (connections), each running one transaction at a time.
    pub clients: usize,
}

/// What pgbench measured for one strategy.
#[derive(Debug, Serialize)]
pub struct Reading {
    pub strategy: &'static str,
    pub transactions: u64,
    /// pgbench's tps, without the time spent connecting.
    pub transactions_per_sec: f64,
    pub purchases_per_transaction: u64,
    pub purchases_per_sec: f64,
}

/// The whole measurement, and the state of the hot row after it.
#[derive(Debug, Serialize)]
pub struct Ceiling {
    pub seconds: u64,
    pub clients: usize,
    pub server_version: String,
    pub readings: Vec<Reading>,
    /// The hot row's stock before the first strategy ran.
    pub stock: i64,
    pub remaining: i64,
    pub sell_count: i64,
    pub orders: i64,
    /// `remaining + orders == stock` and `sell_count == orders`.
    pub consistent: bool,
}

/// Starts a private cluster, runs every strategy against it, checks the hot
/// row, and removes the cluster again.
pub async fn measure(opts: &Options) -> anyhow::Result<Ceiling> {
    if opts.seconds == 0 || opts.clients == 0 {
        bail!("--seconds and --clients must be at least 1");
    }
    let pgbench = find_pgbench()?;
    eprintln!("starting a private PostgreSQL for pgbench...");
    let scratch = flashsale::embedded_pg::scratch_dir("flashsale-stress-ceiling")?;
    let result = match start_cluster(scratch.join("db")).await {
        Ok(pg) => {
            let result = on_cluster(&pg, &pgbench, &scratch, opts).await;
            let _ = tokio::task::spawn_blocking(move || drop(pg)).await;
            result
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn on_cluster(
    pg: &flashsale::embedded_pg::EmbeddedPg,
    pgbench: &Path,
    scratch: &Path,
    opts: &Options,
) -> anyhow::Result<Ceiling> {
    const DB: &str = "ceiling";
    flashsale::run::create_database(pg, DB).await?;
    let mut conn = sqlx::PgConnection::connect_with(&pg.connect_options(DB)).await?;
    sqlx::raw_sql(SETUP).execute(&mut conn).await?;
    let stock: i64 = sqlx::query_scalar("select remaining from ceiling_sale where id = 1")
        .fetch_one(&mut conn)
        .await?;
    let server_version: String = sqlx::query_scalar("show server_version")
        .fetch_one(&mut conn)
        .await?;

    let url = pg.url(DB);
    let mut readings = Vec::new();
    for (i, strategy) in STRATEGIES.iter().enumerate() {
        eprintln!(
            "{}: {} s, {} clients...",
            strategy.name, opts.seconds, opts.clients
        );
        let script = scratch.join(format!("{}.sql", strategy.name));
        std::fs::write(&script, strategy.script)?;
        let (transactions, tps) = pgbench_run(pgbench, &script, i + 1, &url, opts).await?;
        readings.push(Reading {
            strategy: strategy.name,
            transactions,
            transactions_per_sec: tps,
            purchases_per_transaction: strategy.purchases_per_transaction,
            purchases_per_sec: tps * strategy.purchases_per_transaction as f64,
        });
    }

    let (remaining, sell_count, orders): (i64, i64, i64) = sqlx::query_as(
        "select remaining, sell_count, (select count(*) from ceiling_order)
           from ceiling_sale where id = 1",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(Ceiling {
        seconds: opts.seconds,
        clients: opts.clients,
        server_version,
        readings,
        stock,
        remaining,
        sell_count,
        orders,
        consistent: remaining + orders == stock && sell_count == orders,
    })
}

/// Runs one pgbench script; returns the transactions processed and the tps.
async fn pgbench_run(
    pgbench: &Path,
    script: &Path,
    strategy: usize,
    url: &str,
    opts: &Options,
) -> anyhow::Result<(u64, f64)> {
    let out = tokio::process::Command::new(pgbench)
        .arg("--no-vacuum")
        .arg("--file")
        .arg(script)
        .args(["--client", &opts.clients.to_string()])
        .args(["--jobs", &opts.clients.min(2).to_string()])
        .args(["--time", &opts.seconds.to_string()])
        .args(["--define", &format!("strategy={strategy}")])
        .args(["--define", "seq=0"])
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed = || {
        anyhow!(
            "pgbench failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if !out.status.success() {
        return Err(failed());
    }
    parse_pgbench(&stdout).ok_or_else(failed)
}

/// Reads "number of transactions actually processed: N" and "tps = X" from
/// pgbench's report.
fn parse_pgbench(report: &str) -> Option<(u64, f64)> {
    let field = |prefix: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    };
    let transactions = field("number of transactions actually processed:")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let tps = field("tps =")?.parse().ok()?;
    Some((transactions, tps))
}

/// pgbench beside the server binaries the cluster is started from, else on
/// PATH.
pub fn find_pgbench() -> anyhow::Result<PathBuf> {
    let explicit = std::env::var_os("PG_BIN_DIR").map(PathBuf::from);
    let beside = flashsale::embedded_pg::find_bin_dir(explicit.as_deref())
        .ok()
        .map(|dir| dir.join("pgbench"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbench"));
    beside.into_iter().chain(on_path).find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "pgbench was found neither beside the PostgreSQL server binaries nor on PATH: install PostgreSQL's pgbench (on Debian and Ubuntu it comes with the server package, apt-get install postgresql)"
        )
    })
}

/// The human summary.
pub fn text(c: &Ceiling) -> String {
    let mut o = format!(
        "one-row purchase ceiling of PostgreSQL {}: pgbench, {} client(s), {} s per strategy, no HTTP\n",
        c.server_version, c.clients, c.seconds
    );
    for r in &c.readings {
        o.push_str(&format!(
            "{:<18} {:>10.0} purchases/s  ({:.0} transactions/s x {})\n",
            r.strategy, r.purchases_per_sec, r.transactions_per_sec, r.purchases_per_transaction
        ));
    }
    o.push_str(&format!(
        "hot row            remaining {} + orders {} {} stock {}; sell_count {} {} orders\n",
        c.remaining,
        c.orders,
        if c.remaining + c.orders == c.stock {
            "=="
        } else {
            "!="
        },
        c.stock,
        c.sell_count,
        if c.sell_count == c.orders { "==" } else { "!=" },
    ));
    o.push_str(if c.consistent {
        "verdict            PASS: the hot row stayed consistent\n"
    } else {
        "verdict            FAIL: the hot row's counters do not match its orders\n"
    });
    o
}
