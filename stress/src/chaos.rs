//! Faults in the middle of a run (`--chaos KIND[@TIME]`, self-contained
//! only): SIGKILL of one instance, a fast restart of PostgreSQL, a crash
//! of PostgreSQL (SIGKILL of the postmaster) and its start with crash
//! recovery, or a failover: the primary stopped at once and its standby
//! promoted. The time counts from the start of the run's load (for `exact`,
//! the sale's opening).
//!
//! The fault runs beside the load, on the load's own clock, and records when
//! it struck and, for the database, when PostgreSQL accepted a connection
//! again (a probe that connects every 20 ms and asks when the postmaster
//! started, so the old server, still up for a moment after a restart was
//! asked for, does not count); for a failover, when the promoted standby
//! accepted writes. [`facts`] then reads the recovery from the ledger: the
//! time to the next 201 and the `busy` answers in between.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;

use crate::environment::Environment;
use crate::load::Ledger;

/// Which fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaosKind {
    /// SIGKILL to the last instance; the others must sell the rest.
    KillInstance,
    /// `pg_ctl restart -m fast`.
    RestartDb,
    /// SIGKILL to the postmaster, then a start (crash recovery).
    CrashDb,
    /// `pg_ctl stop -m immediate` of the primary, then `pg_ctl promote` of
    /// its standby (`--replica`), which the instances must follow.
    Failover,
}

impl ChaosKind {
    pub fn name(self) -> &'static str {
        match self {
            ChaosKind::KillInstance => "kill-instance",
            ChaosKind::RestartDb => "restart-db",
            ChaosKind::CrashDb => "crash-db",
            ChaosKind::Failover => "failover",
        }
    }
}

/// A fault and when it strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chaos {
    pub kind: ChaosKind,
    /// After the start of the load.
    pub at: Duration,
}

/// When a fault strikes if no time is given: well into the sale, with the
/// stock of any run worth breaking still selling.
pub const DEFAULT_AT: Duration = Duration::from_secs(2);

impl FromStr for Chaos {
    type Err = String;

    /// `kill-instance`, `restart-db`, `crash-db` or `failover`, optionally `@2s`,
    /// `@1.5s` or `@500ms`.
    fn from_str(s: &str) -> Result<Chaos, String> {
        let (kind, at) = match s.split_once('@') {
            Some((k, t)) => (k, Some(t)),
            None => (s, None),
        };
        let kind = match kind {
            "kill-instance" => ChaosKind::KillInstance,
            "restart-db" => ChaosKind::RestartDb,
            "crash-db" => ChaosKind::CrashDb,
            "failover" => ChaosKind::Failover,
            other => {
                return Err(format!(
                    "unknown fault {other:?}: kill-instance, restart-db, crash-db or failover"
                ))
            }
        };
        let at = match at {
            None => DEFAULT_AT,
            Some(t) => parse_time(t)
                .ok_or_else(|| format!("{t:?} is not a time like 2s, 1.5s or 500ms"))?,
        };
        Ok(Chaos { kind, at })
    }
}

fn parse_time(t: &str) -> Option<Duration> {
    let (num, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s')?, 1.0)
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && (0.0..=3600.0).contains(&v)).then(|| Duration::from_secs_f64(v * scale))
}

/// Refuses a fault the environment cannot carry out.
pub fn check(chaos: &Chaos, env: &Environment) -> anyhow::Result<()> {
    if !env.is_self_contained() {
        bail!("--chaos needs the self-contained mode (no --target)");
    }
    if chaos.kind == ChaosKind::KillInstance && env.targets.len() < 2 {
        bail!("--chaos kill-instance needs --instances 2 or more (a survivor to sell through)");
    }
    if chaos.kind == ChaosKind::Failover && !env.can_fail_over() {
        bail!("--chaos failover needs a standby to promote (--replica) and no pooler");
    }
    Ok(())
}

/// What the fault did, on the load's clock (microseconds since its start).
#[derive(Clone, Copy, Debug)]
pub struct Struck {
    pub chaos: Chaos,
    pub at_us: u64,
    /// The killed instance.
    pub killed: Option<usize>,
    /// When PostgreSQL accepted a connection again.
    pub back_us: Option<u64>,
}

/// Orders the run's sales must hold before a fault strikes (with the
/// database reachable), so that it strikes mid-sale.
const FIRST_ORDERS: i64 = 10;

/// Waits for the load to start, then for `chaos.at` and the first
/// [`FIRST_ORDERS`] orders, and strikes; returns `None` if `run_done` turns
/// true first (the run ended before the fault). Once struck, the fault is
/// carried out to the end (the database is back) even if the run ends
/// meanwhile.
pub async fn strike(
    env: &Environment,
    chaos: Chaos,
    mut run_done: watch::Receiver<bool>,
) -> anyhow::Result<Option<Struck>> {
    let mut clock = env.load_clock().subscribe();
    let wait = async {
        let start = *clock.wait_for(Option::is_some).await?;
        let start = start.context("the load clock has started")?;
        tokio::time::sleep_until((start + chaos.at).into()).await;
        // Mid-sale means after the first orders too: on a slow machine the
        // load may take longer than `at` to sell anything.
        if let Some(db) = &env.db {
            let sales: Vec<i64> = env
                .sales_made()
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            loop {
                let sold: i64 = sqlx::query_scalar(
                    "select count(*) from purchase_order where sale_id = any($1)",
                )
                .bind(&sales)
                .fetch_one(db)
                .await
                .unwrap_or(0);
                if sold >= FIRST_ORDERS {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        anyhow::Ok(start)
    };
    let start = tokio::select! {
        start = wait => start?,
        _ = run_done.wait_for(|d| *d) => return Ok(None),
    };
    let since = |t: Instant| t.saturating_duration_since(start).as_micros() as u64;
    let wall = Utc::now();
    let at = Instant::now();
    let mut struck = Struck {
        chaos,
        at_us: since(at),
        killed: None,
        back_us: None,
    };
    match chaos.kind {
        ChaosKind::KillInstance => {
            let victim = env.targets.len() - 1;
            env.kill_instance(victim)?;
            struck.killed = Some(victim);
        }
        ChaosKind::RestartDb | ChaosKind::CrashDb => {
            let opts = env
                .probe_options()
                .context("no database to restart in this environment")?;
            let crash = chaos.kind == ChaosKind::CrashDb;
            let (restarted, back) =
                tokio::join!(env.restart_db(crash), accepting_again(&opts, wall));
            restarted?;
            struck.back_us = Some(since(back?));
        }
        ChaosKind::Failover => {
            env.fail_over().await?;
            struck.back_us = Some(since(Instant::now()));
        }
    }
    Ok(Some(struck))
}

/// The first moment a fresh connection to a postmaster started after `after`
/// succeeds.
async fn accepting_again(
    opts: &sqlx::postgres::PgConnectOptions,
    after: DateTime<Utc>,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let opts = opts.clone().disable_statement_logging();
    loop {
        let probe = async {
            let mut c = sqlx::PgConnection::connect_with(&opts).await?;
            let started: DateTime<Utc> = sqlx::query_scalar("select pg_postmaster_start_time()")
                .fetch_one(&mut c)
                .await?;
            let _ = c.close().await;
            Ok::<_, sqlx::Error>(started)
        };
        let now = Instant::now();
        if let Ok(Ok(started)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
            if started > after {
                return Ok(now);
            }
        }
        if Instant::now() > deadline {
            bail!("PostgreSQL did not accept connections within 120 s of the fault");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fault and the recovery, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosFacts {
    pub kind: &'static str,
    /// Seconds into the load when the fault struck.
    pub struck_at_secs: f64,
    /// 201s answered before the fault (so the sale was still selling).
    pub created_before: u64,
    /// The instance killed (`kill-instance`).
    pub killed_instance: Option<usize>,
    /// Seconds from the fault to PostgreSQL accepting a connection again (the
    /// promoted standby accepting writes, for `failover`).
    pub db_down_secs: Option<f64>,
    /// Seconds from PostgreSQL accepting again (`restart-db`, `crash-db`),
    /// from the promoted standby accepting writes (`failover`), or from the
    /// kill (`kill-instance`, on a survivor) to the next 201; none
    /// when no 201 came after.
    pub recovery_secs: Option<f64>,
    /// `busy` answers from the fault to that 201.
    pub busy_since_fault: u64,
    /// `busy` answers from PostgreSQL accepting again to that 201.
    pub busy_during_recovery: u64,
    /// What a `failover` lost.
    pub failover: Option<FailoverFacts>,
}

/// The standby that was promoted, and what it lacked.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FailoverFacts {
    /// It was synchronous (`--sync-standby`): it must have every
    /// acknowledged order.
    pub synchronous: bool,
    /// 201s whose order the promoted standby does not hold (none when the
    /// database was not reachable to count them).
    pub lost_acknowledged: Option<u64>,
}

/// Reads the recovery of a struck fault from the run's ledger.
pub fn facts(s: &Struck, ledger: &Ledger) -> ChaosFacts {
    let resumed = s.back_us.unwrap_or(s.at_us);
    let next = ledger
        .successes
        .iter()
        .filter(|x| x.done_us >= resumed && Some(x.instance) != s.killed)
        .map(|x| x.done_us)
        .min();
    let busy_between = |from: u64| {
        let to = next.unwrap_or(u64::MAX);
        ledger
            .samples
            .iter()
            .filter(|x| x.status == 503 && x.code.as_deref() == Some("busy"))
            .filter(|x| (from..=to).contains(&(x.sent_us + x.latency_us)))
            .count() as u64
    };
    let secs = |us: u64| us as f64 / 1e6;
    ChaosFacts {
        kind: s.chaos.kind.name(),
        struck_at_secs: secs(s.at_us),
        created_before: ledger
            .successes
            .iter()
            .filter(|x| x.done_us < s.at_us)
            .count() as u64,
        killed_instance: s.killed,
        db_down_secs: s.back_us.map(|b| secs(b.saturating_sub(s.at_us))),
        recovery_secs: next.map(|n| secs(n - resumed)),
        busy_since_fault: busy_between(s.at_us),
        busy_during_recovery: if s.back_us.is_some() {
            busy_between(resumed)
        } else {
            0
        },
        failover: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_parses_with_and_without_a_time() {
        let c: Chaos = "kill-instance@3s".parse().unwrap();
        assert_eq!(c.kind, ChaosKind::KillInstance);
        assert_eq!(c.at, Duration::from_secs(3));
        let c: Chaos = "restart-db".parse().unwrap();
        assert_eq!((c.kind, c.at), (ChaosKind::RestartDb, DEFAULT_AT));
        let c: Chaos = "crash-db@500ms".parse().unwrap();
        assert_eq!(
            (c.kind, c.at),
            (ChaosKind::CrashDb, Duration::from_millis(500))
        );
        let c: Chaos = "crash-db@1.5s".parse().unwrap();
        assert_eq!(c.at, Duration::from_millis(1500));
        let c: Chaos = "failover@1s".parse().unwrap();
        assert_eq!(
            (c.kind, c.at),
            (ChaosKind::Failover, Duration::from_secs(1))
        );
        assert_eq!(c.kind.name(), "failover");
        for bad in [
            "kill-db",
            "restart-db@",
            "restart-db@3",
            "crash-db@-1s",
            "crash-db@2h",
        ] {
            assert!(bad.parse::<Chaos>().is_err(), "{bad}");
        }
    }
}
