//! The flashsale load harness as a library: the environment it drives, the
//! load it fires, the invariants it checks and the reports it writes. The
//! `stress` binary is a thin command line over it; the tests use it directly.

/// PostgreSQL's own one-row purchase ceiling, measured with pgbench.
pub mod ceiling;
/// Faults in the middle of a run: a killed instance, a restarted or crashed
/// PostgreSQL, a failover to the standby.
pub mod chaos;
/// Starting (or reaching) the database and the flashsale instances.
pub mod environment;
/// Firing requests and recording every answer.
pub mod load;
/// Making buyers, products and sales.
pub mod provision;
/// Human, JSON and HTML reports.
pub mod report;
/// The scenarios.
pub mod scenario;
/// The private cluster and the servers' settings.
pub mod servers;
/// The invariants checked during and after every run.
pub mod verify;

use environment::Environment;
use scenario::{Common, Scenario};

/// Runs a scenario, sampling the invariants while it runs when the database
/// is reachable and striking `common.chaos` in its middle, then checks every
/// invariant: in SQL when the database is reachable, through the admin API
/// otherwise. Deadlocks are read before and after, with the database. The
/// invariants cover the sales and the catalog's books the run stocked (those
/// only in SQL).
pub async fn run_and_verify(
    env: &Environment,
    common: &Common,
    scenario: &Scenario,
) -> anyhow::Result<report::Summary> {
    if let Some(c) = &common.chaos {
        chaos::check(c, env)?;
    }
    let logs = env.db_logs();
    let deadlocks_before = match &env.db {
        Some(db) => Some(verify::deadlocks::read(db, &logs).await?),
        None => None,
    };
    let books_from = lock(&env.products_made()).len();
    let sampler = env
        .db
        .clone()
        .map(|db| verify::during::Sampler::watching(db, env.sales_made(), env.products_made()));
    let pooler = match (&env.db, env.pooler_pool_size()) {
        (Some(db), Some(n)) => Some(verify::pooler::Watch::start(db.clone(), n)),
        _ => None,
    };
    let replica = match (&env.db, env.has_replica()) {
        (Some(db), true) => {
            Some(verify::replica::Watch::start(db.clone(), env.targets.clone()).await)
        }
        _ => None,
    };
    // The fault waits for this run's load to start, not a previous run's.
    env.load_clock().send_replace(None);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let run = async {
        let run = scenario.run(env, common).await;
        done_tx.send_replace(true);
        run
    };
    let fault = async {
        match common.chaos {
            Some(c) => chaos::strike(env, c, done_rx).await,
            None => Ok(None),
        }
    };
    let (run, struck) = tokio::join!(run, fault);
    let sampling = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let pooler = match pooler {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let replica = match replica {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let run = run?;
    let struck = struck?;
    if let (Some(c), None) = (&common.chaos, &struck) {
        anyhow::bail!(
            "the run's load ended {:.2} s in, before --chaos {} at {:.2} s: nothing was broken; \
             give it more buyers or an earlier time",
            run.elapsed.as_secs_f64(),
            c.kind.name(),
            c.at.as_secs_f64()
        );
    }
    let mut violations = verify::check_answers(&run.ledger);
    violations.extend(sampling.as_ref().and_then(|s| s.first_violation.clone()));
    violations.extend(pooler.as_ref().and_then(|p| p.violation()));
    let mut payments = None;
    let mut cart = None;
    let mut queue = None;
    let failover = struck
        .as_ref()
        .is_some_and(|s| s.chaos.kind == chaos::ChaosKind::Failover);
    let mut lost = None;
    let tally = match &env.db {
        Some(db) => {
            let found = verify::check_database(db, &run.sales, &run.ledger).await?;
            if failover {
                lost = Some(verify::lost_acknowledged(db, &run.sales, &run.ledger).await?);
            }
            // An asynchronous standby loses the commits it had not received:
            // those 201s are counted and reported as its loss, not as a
            // broken rule. A synchronous one must lose none.
            let async_loss = failover && !env.standby_is_sync();
            violations.extend(
                found
                    .into_iter()
                    .filter(|v| !(async_loss && v.rule == "every_201_is_an_order")),
            );
            violations.extend(verify::payments::check(db, &run.sales).await?);
            payments = verify::payments::facts(db, &run.sales).await?;
            let books = lock(&env.products_made())[books_from..].to_vec();
            if !books.is_empty() {
                let ids: Vec<i64> = books.iter().map(|b| b.id).collect();
                violations.extend(
                    verify::catalog::check(db, &books, common.hold_secs, &run.ledger).await?,
                );
                violations.extend(verify::payments::check_catalog(db, &ids).await?);
                if payments.is_none() {
                    payments = Some(verify::payments::catalog_facts(db, &ids).await?);
                }
                let secs = run.elapsed.as_secs_f64();
                cart = Some(verify::catalog::facts(db, &books, &run.ledger, secs).await?);
            }
            if let Some(q) = &run.queue {
                let (found, facts) = verify::queue::check(db, q).await?;
                violations.extend(found);
                queue = Some(facts);
            }
            Some(verify::tally(db, &run.sales).await?)
        }
        None => {
            let admin = provision::admin_token(env, &common.admin).await?;
            violations.extend(
                verify::check_through_api(&env.targets[0], &admin, &run.sales, &run.ledger).await?,
            );
            None
        }
    };
    let deadlocks = match (&env.db, deadlocks_before) {
        (Some(db), Some(before)) => {
            let d = verify::deadlocks::Deadlocks::new(
                before,
                verify::deadlocks::read(db, &logs).await?,
            );
            violations.extend(d.violation());
            Some(d)
        }
        _ => None,
    };
    let mut summary = report::summarize(&run, violations, sampling, tally);
    summary.deadlocks = deadlocks;
    summary.payments = payments;
    summary.cart = cart;
    summary.queue = queue;
    summary.pooler = pooler;
    summary.replica = replica;
    summary.chaos = struck.map(|s| {
        let mut facts = chaos::facts(&s, &run.ledger);
        if failover {
            facts.failover = Some(chaos::FailoverFacts {
                synchronous: env.standby_is_sync(),
                lost_acknowledged: lost,
            });
        }
        facts
    });
    Ok(summary)
}

fn lock<T>(noted: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    noted.lock().unwrap_or_else(|e| e.into_inner())
}
