//! The verifier checks itself: it must fail a deliberately inconsistent
//! database, after the run and in the sampler's snapshots during it, and
//! fail server errors and answers the contract does not document.

use sqlx::PgPool;
use stress::load::{Kind, Ledger, Sample, Success};
use stress::provision::SaleInfo;
use stress::verify::during::{self, Sampler};
use stress::verify::{check_answers, check_database};

use super::{consistent_sale, fresh_db, rules, snapshot_of};

#[tokio::test]
async fn a_consistent_database_passes() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn an_extra_order_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, users) = consistent_sale(&db).await;
    sqlx::query(
        "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents,
                                     currency)
         values ($1, $2, $3, 1, 100, 100, 'EUR')",
    )
    .bind(sale.id)
    .bind(sale.product_id)
    .bind(users[2])
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    let r = rules(&v);
    assert!(r.contains(&"sold_plus_remaining_is_stock"), "{v:?}");
    assert!(r.contains(&"every_order_was_answered"), "{v:?}");
    assert!(r.contains(&"sell_count_matches_orders"), "{v:?}");
    assert!(
        v.iter()
            .any(|x| x.detail.contains("sold 3 + remaining 8 != stock 10")),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_sell_count_off_by_one_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    sqlx::query("update product set sell_count = sell_count + 1 where id = $1")
        .bind(sale.product_id)
        .execute(&db)
        .await
        .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["sell_count_matches_orders"], "{v:?}");
    assert!(
        v[0].detail
            .contains("sell_count 3 but its live orders hold 2 units"),
        "{v:?}"
    );
}

#[tokio::test]
async fn an_order_outside_the_window_fails_the_run() {
    let db = fresh_db().await;
    let (sale, ledger, _) = consistent_sale(&db).await;
    sqlx::query(
        "update purchase_order set created_at = (select ends_at from sale where id = $1) + interval '1 second'
          where id = $2",
    )
    .bind(sale.id)
    .bind(ledger.successes[0].order_id)
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["orders_inside_window"], "{v:?}");
}

#[tokio::test]
async fn a_201_without_an_order_fails_the_run() {
    let db = fresh_db().await;
    let (sale, mut ledger, users) = consistent_sale(&db).await;
    ledger.successes.push(Success {
        sale_id: sale.id,
        user_id: users[2],
        order_id: 999_999,
        done_us: 2,
        instance: 0,
    });
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["every_201_is_an_order"], "{v:?}");
}

#[tokio::test]
async fn an_order_whose_answer_was_lost_is_explained_by_the_unknown_outcome() {
    let db = fresh_db().await;
    let (sale, mut ledger, _) = consistent_sale(&db).await;
    let lost = ledger.successes.pop().unwrap();
    ledger.unknown.push((lost.sale_id, lost.user_id));
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
}

/// Makes the consistent sale one with a 60 s hold whose first buyer's hold
/// expired and who bought again: two orders of one user, one of them live.
async fn expire_and_rebuy(db: &PgPool, sale: &mut SaleInfo, ledger: &mut Ledger) {
    sale.hold_secs = 60;
    let first = ledger.successes[0].clone();
    sqlx::query("update sale set hold_secs = 60 where id = $1")
        .bind(sale.id)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "update purchase_order set status = 'pending_payment', created_at = now() - interval '2 minutes',
                expires_at = now() - interval '1 minute' where sale_id = $1",
    )
    .bind(sale.id)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "update purchase_order set status = 'expired', released_at = now() - interval '59 seconds' where id = $1",
    )
    .bind(first.order_id)
    .execute(db)
    .await
    .unwrap();
    let again: i64 = sqlx::query_scalar(
        "insert into purchase_order (sale_id, product_id, user_id, quantity, unit_price_cents, total_cents,
                                     currency, status, created_at, expires_at)
         values ($1, $2, $3, 1, 100, 100, 'EUR', 'pending_payment', now() - interval '30 seconds',
                 now() + interval '30 seconds')
         returning id",
    )
    .bind(sale.id)
    .bind(sale.product_id)
    .bind(first.user_id)
    .fetch_one(db)
    .await
    .unwrap();
    ledger.successes.push(Success {
        order_id: again,
        done_us: 3,
        ..first
    });
}

#[tokio::test]
async fn a_hold_that_expired_and_was_bought_again_passes() {
    let db = fresh_db().await;
    let (mut sale, mut ledger, _) = consistent_sale(&db).await;
    expire_and_rebuy(&db, &mut sale, &mut ledger).await;
    // Three 201s, two live orders: remaining 8 and sell_count 2 still add up.
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn a_second_live_order_or_a_rebuy_before_the_release_fails_the_run() {
    let db = fresh_db().await;
    let (mut sale, mut ledger, _) = consistent_sale(&db).await;
    expire_and_rebuy(&db, &mut sale, &mut ledger).await;
    // The expired hold was released only after the buyer bought again.
    sqlx::query(
        "update purchase_order set released_at = now() where sale_id = $1 and status = 'expired'",
    )
    .bind(sale.id)
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, std::slice::from_ref(&sale), &ledger)
        .await
        .unwrap();
    assert_eq!(rules(&v), vec!["rebuys_follow_releases"], "{v:?}");
    // Both orders live at once (the live key stops this, so drop it first).
    sqlx::query("drop index purchase_order_live_key")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "update purchase_order set status = 'pending_payment', released_at = null,
                expires_at = created_at + interval '60 seconds'
          where sale_id = $1 and status = 'expired'",
    )
    .bind(sale.id)
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, &[sale], &ledger).await.unwrap();
    let r = rules(&v);
    assert!(r.contains(&"one_live_order_per_user"), "{v:?}");
    assert!(r.contains(&"sold_plus_remaining_is_stock"), "{v:?}");
}

#[test]
fn a_sample_that_does_not_add_up_is_a_violation() {
    assert_eq!(during::check(&snapshot_of(8, 2, 2)), None);
    let v = during::check(&snapshot_of(9, 2, 2)).expect("remaining off by one");
    assert_eq!(v.rule, "invariants_hold_during_the_run");
    assert!(
        v.detail
            .starts_with("sale 7: remaining 9 + live units 2 != stock 10, at 1.25 s"),
        "{v:?}"
    );
    let v = during::check(&snapshot_of(8, 2, 3)).expect("sell_count off by one");
    assert!(
        v.detail
            .starts_with("product 3 (sale 7): sell_count 3 != live units 2"),
        "{v:?}"
    );
}

#[test]
fn a_sample_with_payments_or_holds_out_of_order_is_a_violation() {
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].paid_unpaired = 1;
    let v = during::check(&s).expect("a paid order without its payment");
    assert!(
        v.detail
            .starts_with("sale 7: 1 paid order(s) without exactly one succeeded payment"),
        "{v:?}"
    );
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].stray_payments = 2;
    let v = during::check(&s).expect("a payment without its order");
    assert!(
        v.detail.starts_with("sale 7: 2 succeeded payment(s)"),
        "{v:?}"
    );
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].overdue_holds = 3;
    let v = during::check(&s).expect("a hold past its time");
    assert!(
        v.detail
            .starts_with("sale 7: 3 hold(s) pending more than 1500 ms"),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_sampled_mid_run_fails_it_though_repaired_by_the_end() {
    let db = fresh_db().await;
    let sales = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = Sampler::start(db.clone(), sales.clone());
    let (sale, ledger, _) = consistent_sale(&db).await;
    sales.lock().unwrap().push(sale.id);
    tokio::time::sleep(during::EVERY * 2).await;
    let corrupt = |by: i64| {
        sqlx::query("update sale set remaining = remaining + $2 where id = $1")
            .bind(sale.id)
            .bind(by)
    };
    corrupt(1).execute(&db).await.unwrap();
    tokio::time::sleep(during::EVERY * 3).await;
    corrupt(-1).execute(&db).await.unwrap();
    tokio::time::sleep(during::EVERY * 2).await;
    let seen = sampler.finish().await;
    assert!(seen.samples >= 4, "{seen:?}");
    assert!(seen.failed >= 1 && seen.failed < seen.samples, "{seen:?}");
    let v = seen.first_violation.expect("the corruption was sampled");
    assert!(
        v.detail.contains(&format!(
            "sale {}: remaining 9 + live units 2 != stock 10",
            sale.id
        )),
        "{v:?}"
    );
    // After the run nothing is wrong any more: only the sampler saw it.
    let after = check_database(&db, &[sale], &ledger).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
}

#[test]
fn server_errors_and_undocumented_answers_fail_the_run() {
    let sample = |status, code: Option<&str>| Sample {
        kind: Kind::Purchase,
        status,
        code: code.map(str::to_string),
        sent_us: 0,
        latency_us: 1,
    };
    let ledger = Ledger {
        samples: vec![
            sample(201, None),
            sample(409, Some("sold_out")),
            sample(503, Some("busy")),
            sample(500, Some("internal_error")),
            sample(200, None),
            sample(409, Some("made_up")),
        ],
        ..Ledger::default()
    };
    let v = check_answers(&ledger);
    let r = rules(&v);
    assert_eq!(
        r,
        vec!["answers_are_documented", "no_server_errors"],
        "{v:?}"
    );
    assert_eq!(v.len(), 3, "{v:?}");
}
