//! The flashsale load harness as a library: the environment it drives, the
//! load it fires, the invariants it checks and the reports it writes. The
//! `stress` binary is a thin command line over it; the tests use it directly.

/// PostgreSQL's own one-row purchase ceiling, measured with pgbench.
pub mod ceiling;
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
/// The invariants checked during and after every run.
pub mod verify;

use environment::Environment;
use scenario::{Common, Scenario};

/// Runs a scenario, sampling the invariants while it runs when the database
/// is reachable, then checks every invariant: in SQL when the database is
/// reachable, through the admin API otherwise.
pub async fn run_and_verify(
    env: &Environment,
    common: &Common,
    scenario: &Scenario,
) -> anyhow::Result<report::Summary> {
    let sampler = env
        .db
        .clone()
        .map(|db| verify::during::Sampler::start(db, env.sales_made()));
    let run = scenario.run(env, common).await;
    let sampling = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let run = run?;
    let mut violations = verify::check_answers(&run.ledger);
    violations.extend(sampling.as_ref().and_then(|s| s.first_violation.clone()));
    let tally = match &env.db {
        Some(db) => {
            violations.extend(verify::check_database(db, &run.sales, &run.ledger).await?);
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
    Ok(report::summarize(&run, violations, sampling, tally))
}
