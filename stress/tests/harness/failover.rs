//! `--chaos failover` end to end: a small `exact` run on two instances given
//! both hosts of a primary and its hot standby; 300 ms in, the primary stops
//! at once and the standby is promoted. The instances follow it without a
//! restart and the whole stock sells. With a synchronous standby not one
//! acknowledged order is lost; with an asynchronous one the run counts what
//! was lost and says so instead of failing.

use stress::chaos::ChaosKind;
use stress::environment::Topology;

use super::chaos::exact_on;

fn standby(sync_standby: bool) -> Topology {
    Topology {
        replica: true,
        sync_standby,
        ..Topology::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_order() {
    let s = exact_on(ChaosKind::Failover, 2, standby(true)).await;
    let f = s.chaos.expect("the failover struck");
    let lost = f.failover.expect("the failover's facts");
    assert!(lost.synchronous, "{lost:?}");
    assert_eq!(lost.lost_acknowledged, Some(0), "{lost:?}");
    assert!(f.db_down_secs.is_some(), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_an_asynchronous_standby_counts_what_it_lost() {
    let s = exact_on(ChaosKind::Failover, 2, standby(false)).await;
    let f = s.chaos.expect("the failover struck");
    let lost = f.failover.expect("the failover's facts");
    assert!(!lost.synchronous, "{lost:?}");
    // How many the standby lacked depends on the moment: it is counted,
    // whatever it is.
    assert!(lost.lost_acknowledged.is_some(), "{lost:?}");
}
