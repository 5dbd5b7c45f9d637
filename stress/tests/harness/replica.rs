//! `--replica` end to end: a short `mixed` soak on two instances whose
//! catalog reads go to a hot standby of the harness's cluster. Every
//! invariant holds, the replica serves reads, the standby streams, and the
//! report carries its replay lag.

use std::time::Duration;

use stress::environment::{default_server_env, Environment, Topology};
use stress::scenario::Scenario;

use super::{common, stress_exe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_reads_the_catalog_from_the_replica() {
    let topology = Topology {
        replica: true,
        ..Topology::default()
    };
    let env = Environment::self_contained_with(2, &default_server_env(), &stress_exe(), topology)
        .await
        .unwrap();
    assert!(env.describe().contains("replica"), "{}", env.describe());
    let summary = stress::run_and_verify(
        &env,
        &common(),
        &Scenario::Mixed {
            duration: Duration::from_secs(3),
            sales: 2,
            stock: 20,
            users: 200,
        },
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let r = s.replica.expect("the replica's facts");
    assert!(r.replica_reads > 0.0, "{r:?}");
    assert!(r.samples > 0 && r.streaming_samples == r.samples, "{r:?}");
    assert!(r.max_replay_lag_ms >= 0.0, "{r:?}");
}
