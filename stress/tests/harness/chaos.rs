//! Faults mid-run, and what keeps the verdict exact under them: a request
//! whose connection was refused goes to the next instance while one cut
//! after sending is an unknown outcome; a deadlock fails the run; and small
//! `exact` runs with an instance killed, PostgreSQL fast-restarted and
//! PostgreSQL crashed each sell exactly the stock and report the recovery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stress::chaos::{Chaos, ChaosKind};
use stress::environment::{default_server_env, Environment, Topology};
use stress::load::{Attempt, Ledger, Load};
use stress::provision::Buyer;
use stress::scenario::{Common, Scenario};
use stress::verify::deadlocks::{self, Deadlocks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{common, fresh_db, stress_exe};

/// A loopback address where nothing listens: connections are refused.
fn dead_target() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// A server that reads each whole purchase request, then either answers it
/// 201 (`answer`) or drops the connection without a word; it counts the
/// requests it received.
async fn fake_instance(answer: bool) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"{\"quantity\":1}") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            count.fetch_add(1, Ordering::SeqCst);
            if answer {
                let body = "{\"id\":7}";
                let resp = format!(
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        }
    });
    (url, seen)
}

fn buyer() -> Buyer {
    Buyer {
        id: 42,
        token: "t".into(),
    }
}

async fn buy_once(targets: &[String]) -> (Attempt, Ledger) {
    let load = Load::new(targets, 1, Duration::from_secs(5)).unwrap();
    let mut ledger = Ledger::default();
    let attempt = load.purchase(0, &buyer(), 9, &mut ledger).await;
    (attempt, ledger)
}

#[tokio::test]
async fn a_refused_connection_is_sent_to_the_next_instance() {
    let (alive, seen) = fake_instance(true).await;
    let (attempt, ledger) = buy_once(&[dead_target(), alive]).await;
    assert!(matches!(attempt, Attempt::Created), "{attempt:?}");
    assert_eq!(ledger.refused, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(ledger.unknown.is_empty(), "{ledger:?}");
    assert_eq!(ledger.successes.len(), 1);
    assert_eq!(ledger.successes[0].instance, 1, "answered by the survivor");
}

#[tokio::test]
async fn a_request_cut_after_sending_is_an_unknown_outcome_and_not_sent_again() {
    let (cutter, seen) = fake_instance(false).await;
    // The cutter is tried first, the dead one would come next: the request
    // must stop at the cut, not move on.
    let (attempt, ledger) = buy_once(&[cutter, dead_target()]).await;
    assert!(matches!(attempt, Attempt::Unknown), "{attempt:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "sent exactly once");
    assert_eq!(ledger.unknown, vec![(9, 42)]);
    assert_eq!((ledger.refused, ledger.unreachable), (0, 0));
    assert_eq!(ledger.samples.len(), 1);
    assert_eq!(ledger.samples[0].status, 0);
}

#[tokio::test]
async fn a_request_every_instance_refuses_was_sent_nowhere() {
    let (attempt, ledger) = buy_once(&[dead_target(), dead_target()]).await;
    assert!(matches!(attempt, Attempt::Retry(_)), "{attempt:?}");
    assert_eq!((ledger.refused, ledger.unreachable), (2, 1));
    assert!(
        ledger.unknown.is_empty() && ledger.samples.is_empty(),
        "{ledger:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_in_the_runs_database_fails_it() {
    let db = fresh_db().await;
    sqlx::query("create table dl (id int primary key)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("insert into dl values (1), (2)")
        .execute(&db)
        .await
        .unwrap();
    let before = deadlocks::read(&db, &[]).await.unwrap();
    assert!(Deadlocks::new(before, before).violation().is_none());

    // Two transactions lock the two rows in opposite orders.
    let mut a = db.acquire().await.unwrap().detach();
    let mut b = db.acquire().await.unwrap().detach();
    let lock = |id: i32| sqlx::query("select id from dl where id = $1 for update").bind(id);
    sqlx::query("begin").execute(&mut a).await.unwrap();
    sqlx::query("begin").execute(&mut b).await.unwrap();
    lock(1).execute(&mut a).await.unwrap();
    lock(2).execute(&mut b).await.unwrap();
    let (ra, rb) = tokio::join!(lock(2).execute(&mut a), lock(1).execute(&mut b));
    assert!(ra.is_err() != rb.is_err(), "exactly one is the victim");
    // A backend sends its counts on exit at the latest.
    sqlx::Connection::close(a).await.unwrap();
    sqlx::Connection::close(b).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let r = deadlocks::read(&db, &[]).await.unwrap();
        if r.counted > before.counted || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = Deadlocks::new(before, after)
        .violation()
        .expect("the deadlock fails the run");
    assert_eq!(v.rule, "no_deadlocks");
    assert!(v.detail.starts_with("1 deadlock(s)"), "{v:?}");
}

/// A small `exact` run on `instances` instances with `kind` struck 300 ms in;
/// the stock is large enough to be still selling then.
async fn exact_with(kind: ChaosKind, instances: usize) -> stress::report::Summary {
    exact_on(kind, instances, Topology::default()).await
}

/// [`exact_with`] on the database pieces of `topology`.
pub(super) async fn exact_on(
    kind: ChaosKind,
    instances: usize,
    topology: Topology,
) -> stress::report::Summary {
    let env =
        Environment::self_contained_with(instances, &default_server_env(), &stress_exe(), topology)
            .await
            .unwrap();
    let c = Common {
        chaos: Some(Chaos {
            kind,
            at: Duration::from_millis(300),
        }),
        ..common()
    };
    let summary = stress::run_and_verify(
        &env,
        &c,
        &Scenario::Exact {
            stock: STOCK,
            buyers: STOCK as usize + 500,
        },
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert_eq!(s.tally.unwrap().units_sold, STOCK, "the whole stock sold");
    let f = s.chaos.clone().expect("the fault struck");
    assert!(
        f.created_before > 0 && (f.created_before as i64) < STOCK,
        "the fault struck mid-sale: {f:?}"
    );
    assert!(f.recovery_secs.is_some(), "a 201 came after: {f:?}");
    assert_eq!(s.deadlocks.map(|d| d.during()), Some(0));
    s
}

const STOCK: i64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_instance_mid_sale_sells_the_stock_through_the_survivor() {
    let s = exact_with(ChaosKind::KillInstance, 2).await;
    assert_eq!(s.chaos.as_ref().unwrap().killed_instance, Some(1));
    assert!(s.refused_connections > 0, "nothing was rerouted");
    // Only requests in flight on the killed instance can be cut.
    assert!(
        s.unknown_outcomes <= common().connections as u64,
        "{} unknown",
        s.unknown_outcomes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_of_postgres_mid_sale_sells_exactly_the_stock() {
    let s = exact_with(ChaosKind::RestartDb, 2).await;
    assert!(s.chaos.unwrap().db_down_secs.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_postgres_mid_sale_recovers_and_sells_exactly_the_stock() {
    let s = exact_with(ChaosKind::CrashDb, 2).await;
    assert!(s.chaos.unwrap().db_down_secs.is_some());
}
