//! `--pooler pgbouncer` end to end: three instances whose pools go through
//! one PgBouncer in transaction mode, lending fewer server connections than
//! their pools hold, sell exactly the stock with every invariant held, and
//! the pooler is seen to bound the server's connections. Skipped with a
//! message where pgbouncer is not installed (scripts/test installs it).

use flashsale::embedded_pg::PgBouncer;
use stress::environment::{default_server_env, Environment, Topology};
use stress::scenario::Scenario;

use super::{common, stress_exe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_run_behind_pgbouncer_holds_every_invariant_within_the_pool() {
    if PgBouncer::program().is_none() {
        eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer; scripts/test installs it)");
        return;
    }
    let pool = 6;
    let topology = Topology {
        pool_size: Some(pool),
        ..Topology::default()
    };
    let env = Environment::self_contained_with(3, &default_server_env(), &stress_exe(), topology)
        .await
        .unwrap();
    assert!(env.describe().contains("PgBouncer"), "{}", env.describe());
    let summary = stress::run_and_verify(
        &env,
        &common(),
        &Scenario::Exact {
            stock: 50,
            buyers: 600,
        },
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.purchases_created, 50);
    let p = s.pooler.expect("the pooler's facts");
    assert_eq!(p.pool_size, pool);
    assert!(p.samples > 0);
    assert!(
        (1..=i64::from(pool)).contains(&p.max_server_connections),
        "{p:?}"
    );
}

#[test]
fn more_server_connections_than_the_pool_is_a_violation() {
    use stress::verify::pooler::PoolerFacts;
    let within = PoolerFacts {
        pool_size: 4,
        max_server_connections: 4,
        samples: 10,
    };
    assert!(within.violation().is_none());
    let beyond = PoolerFacts {
        max_server_connections: 5,
        ..within
    };
    let v = beyond.violation().expect("a violation");
    assert_eq!(v.rule, "pooler_bounds_connections");
}
