//! The `checkout` scenario end to end against real server processes: winners
//! pay, are declined or walk away, released units are sold again, and every
//! payment invariant holds during the run and after it. And the payment
//! checks fail a database where a paid order lost its payment.

use stress::environment::{default_server_env, Environment};
use stress::scenario::{Common, Scenario, Shares};
use stress::verify::payments;

use super::{common, consistent_sale, fresh_db, rules, stress_exe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_checkout_pays_every_unit_through_declines_and_walkaways() {
    let env = Environment::self_contained(2, &default_server_env(), &stress_exe())
        .await
        .unwrap();
    let c = Common {
        hold_secs: 1,
        ..common()
    };
    let summary = stress::run_and_verify(
        &env,
        &c,
        &Scenario::Checkout {
            stock: 60,
            buyers: 600,
            shares: Shares {
                pay: 60,
                decline: 20,
            },
        },
    )
    .await
    .unwrap();
    env.shutdown().await;
    assert!(summary.violations.is_empty(), "{:?}", summary.violations);
    let p = summary.payments.expect("payment facts");
    // Every unit ends paid: declines and walk-aways came back and were sold
    // again.
    assert_eq!(p.paid, 60, "{p:?}");
    assert_eq!(p.pending, 0, "{p:?}");
    assert!(p.payment_failed > 0 && p.expired > 0, "{p:?}");
    assert_eq!(p.payments_succeeded, p.paid + p.refunded, "{p:?}");
    let sampling = summary.sampling.expect("sampled");
    assert!(sampling.samples > 4 && sampling.failed == 0, "{sampling:?}");
}

#[tokio::test]
async fn a_paid_order_without_its_payment_fails_the_check() {
    let db = fresh_db().await;
    let (mut sale, _, _) = consistent_sale(&db).await;
    sale.hold_secs = 60;
    assert!(payments::check(&db, &[sale.clone()])
        .await
        .unwrap()
        .is_empty());
    sqlx::query(
        "update purchase_order set status = 'paid', paid_at = now()
          where id = (select min(id) from purchase_order where sale_id = $1)",
    )
    .bind(sale.id)
    .execute(&db)
    .await
    .unwrap();
    let v = payments::check(&db, &[sale]).await.unwrap();
    assert_eq!(rules(&v), vec!["every_paid_order_has_one_payment"], "{v:?}");
}
