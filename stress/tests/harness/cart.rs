//! The `cart` scenario end to end against real server processes: carts over
//! a small catalog overlap on the last copies, checkouts are paid, declined
//! or walked away from, and the catalog's invariants hold during the run and
//! after it. And the catalog checks fail a database whose stock or
//! sell_count is off by one, after the run and in the sampler's snapshots.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use stress::environment::{default_server_env, Environment, Stocked};
use stress::load::{CheckoutSuccess, Ledger};
use stress::scenario::{CartSpec, Common, Scenario, Shares};
use stress::verify::catalog;
use stress::verify::during::{self, Sampler};

use stress::verify::check_database;

use super::{common, consistent_sale, fresh_db, rules, stress_exe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cart_run_on_two_instances_sells_no_copy_twice() {
    let mut server_env = default_server_env();
    server_env.push(("CART_HOLD_SECS".into(), "1".into()));
    let env = Environment::self_contained(2, &server_env, &stress_exe())
        .await
        .unwrap();
    let c = Common {
        hold_secs: 1,
        ..common()
    };
    let summary = stress::run_and_verify(
        &env,
        &c,
        &Scenario::Cart(CartSpec {
            products: 5,
            copies: 3,
            buyers: 300,
            shares: Shares {
                pay: 60,
                decline: 20,
            },
        }),
    )
    .await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let cart = s.cart.expect("cart facts");
    assert_eq!(cart.units_put_in, 15, "{cart:?}");
    // More carts than copies: some were refused, only ever out_of_stock.
    let out_of_stock = cart.refusals.get("409 out_of_stock").copied().unwrap_or(0);
    assert!(out_of_stock > 0, "{cart:?}");
    assert!(cart.checkouts_created >= 3, "{cart:?}");
    // Settled: nothing pending, so every unit still sold is paid.
    let p = s.payments.expect("payment facts");
    assert_eq!(p.pending, 0, "{p:?}");
    assert_eq!(cart.units_sold, cart.units_paid, "{cart:?}");
    assert!(
        cart.units_paid > 0 && p.payment_failed > 0,
        "{p:?} {cart:?}"
    );
    assert_eq!(p.payments_succeeded, p.paid + p.refunded, "{p:?}");
    let sampling = s.sampling.expect("sampled");
    assert!(sampling.samples > 4 && sampling.failed == 0, "{sampling:?}");
    let deadlocks = s.deadlocks.expect("deadlocks read");
    assert_eq!(deadlocks.during(), 0, "{deadlocks:?}");
}

/// A book of which 5 copies were put in, one held by a pending catalog
/// order of a 60 s hold (stock 4, sell_count 1), and the ledger of the 201
/// that announced it.
async fn consistent_book(db: &PgPool) -> (Stocked, Ledger) {
    let user: i64 = sqlx::query_scalar(
        "insert into app_user (username, email, password_hash)
         values ('reader', 'reader@x.test', '!') returning id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let product: i64 = sqlx::query_scalar(
        "insert into product (seller_id, name, price_cents, stock, sell_count)
         values ($1, 'b', 100, 4, 1) returning id",
    )
    .bind(user)
    .fetch_one(db)
    .await
    .unwrap();
    let order: i64 = sqlx::query_scalar(
        "insert into purchase_order (user_id, quantity, total_cents, currency, status, expires_at)
         values ($1, 1, 100, 'EUR', 'pending_payment', now() + interval '60 seconds') returning id",
    )
    .bind(user)
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query(
        "insert into order_line (order_id, product_id, quantity, unit_price_cents, total_cents)
         values ($1, $2, 1, 100, 100)",
    )
    .bind(order)
    .bind(product)
    .execute(db)
    .await
    .unwrap();
    let ledger = Ledger {
        checkouts: vec![CheckoutSuccess {
            user_id: user,
            order_id: order,
            lines: vec![(product, 1)],
            done_us: 1,
        }],
        ..Ledger::default()
    };
    (
        Stocked {
            id: product,
            put_in: 5,
        },
        ledger,
    )
}

async fn bump(db: &PgPool, product: i64, column: &str, by: i64) {
    sqlx::query(&format!(
        "update product set {column} = {column} + $2 where id = $1"
    ))
    .bind(product)
    .bind(by)
    .execute(db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stock_or_sell_count_off_by_one_fails_the_catalog_check() {
    let db = fresh_db().await;
    let (book, ledger) = consistent_book(&db).await;
    let v = catalog::check(&db, &[book], 60, &ledger).await.unwrap();
    assert!(v.is_empty(), "{v:?}");
    // A hold of another length than the servers' is not what they were told.
    let v = catalog::check(&db, &[book], 30, &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["holds_as_configured"], "{v:?}");

    bump(&db, book.id, "stock", 1).await;
    let v = catalog::check(&db, &[book], 60, &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["stock_plus_held_is_put_in"], "{v:?}");
    assert!(
        v[0].detail.contains("stock 5 + held 1 != put in 5"),
        "{v:?}"
    );
    bump(&db, book.id, "stock", -1).await;
    bump(&db, book.id, "sell_count", 1).await;
    let v = catalog::check(&db, &[book], 60, &ledger).await.unwrap();
    assert_eq!(rules(&v), vec!["sell_count_matches_orders"], "{v:?}");

    // An order nobody was told about, and a 201 whose lines are not the order's.
    bump(&db, book.id, "sell_count", -1).await;
    let v = catalog::check(&db, &[book], 60, &Ledger::default())
        .await
        .unwrap();
    assert_eq!(rules(&v), vec!["every_order_was_answered"], "{v:?}");
    let mut wrong = ledger;
    wrong.checkouts[0].lines = vec![(book.id, 2)];
    let v = catalog::check(&db, &[book], 60, &wrong).await.unwrap();
    assert_eq!(rules(&v), vec!["every_201_is_an_order"], "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_off_for_a_moment_is_sampled_though_repaired_by_the_end() {
    let db = fresh_db().await;
    let books = Arc::new(Mutex::new(Vec::new()));
    let sampler = Sampler::watching(db.clone(), Arc::default(), books.clone());
    let (book, ledger) = consistent_book(&db).await;
    books.lock().unwrap().push(book);
    tokio::time::sleep(during::EVERY * 2).await;
    let corrupt = |by: i64| {
        sqlx::query("update product set stock = stock + $2 where id = $1")
            .bind(book.id)
            .bind(by)
    };
    corrupt(-1).execute(&db).await.unwrap();
    tokio::time::sleep(during::EVERY * 3).await;
    corrupt(1).execute(&db).await.unwrap();
    tokio::time::sleep(during::EVERY * 2).await;
    let seen = sampler.finish().await;
    assert!(seen.samples >= 4, "{seen:?}");
    assert!(seen.failed >= 1 && seen.failed < seen.samples, "{seen:?}");
    let v = seen.first_violation.expect("the corruption was sampled");
    assert!(
        v.detail.contains(&format!(
            "product {}: stock 3 + held 1 != put in 5",
            book.id
        )),
        "{v:?}"
    );
    let after = catalog::check(&db, &[book], 60, &ledger).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    // The snapshot reads the book's catalog and sale units apart.
    let s = during::snapshot_with(&db, &[], &[book], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.products.len(), 1);
    assert_eq!(
        (
            s.products[0].stock,
            s.products[0].catalog_live_units,
            s.products[0].sale_live_units
        ),
        (4, 1, 0)
    );
}

#[tokio::test]
async fn a_product_sold_in_a_sale_and_from_the_catalog_counts_both_kinds() {
    let db = fresh_db().await;
    let (sale, ledger, users) = consistent_sale(&db).await;
    // One copy of the sale's product bought from the catalog too: its
    // sell_count counts the sale's two units and this line.
    sqlx::query("update product set stock = 2, sell_count = 3 where id = $1")
        .bind(sale.product_id)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "with o as (insert into purchase_order (user_id, quantity, total_cents, currency, status,
                                                expires_at)
                    values ($1, 1, 100, 'EUR', 'pending_payment', now() + interval '60 seconds')
                    returning id)
         insert into order_line (order_id, product_id, quantity, unit_price_cents, total_cents)
         select o.id, $2, 1, 100, 100 from o",
    )
    .bind(users[2])
    .bind(sale.product_id)
    .execute(&db)
    .await
    .unwrap();
    let v = check_database(&db, std::slice::from_ref(&sale), &ledger)
        .await
        .unwrap();
    assert!(v.is_empty(), "{v:?}");
    let book = Stocked {
        id: sale.product_id,
        put_in: 3,
    };
    let s = during::snapshot_with(&db, &[sale.id], &[book], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(during::check(&s), None, "{s:?}");
    assert_eq!(
        (s.sales[0].product_live_units, s.products[0].sale_live_units),
        (3, 2)
    );
}
