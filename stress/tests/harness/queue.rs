//! The `queue` scenario end to end against real server processes: a
//! pre-queue joined in a storm, late joiners, bots buying out of turn, and
//! everyone else buying on its turn; the draw, the admission rate and the
//! winners pass the checks. And the queue checks fail a line whose draw
//! follows the join order, whose places have a gap, or whose sale has an
//! order bought without admission, after the run and in the sampler's
//! snapshots.

use stress::environment::{default_server_env, Environment};
use stress::scenario::{QueueRun, QueueSpec, Scenario};
use stress::verify::during;
use stress::verify::queue;

use super::{common, consistent_sale, fresh_db, rules, snapshot_of, stress_exe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_queue_run_on_two_instances_is_fair_and_sells_only_on_turns() {
    let env = Environment::self_contained(2, &default_server_env(), &stress_exe())
        .await
        .unwrap();
    let spec = QueueSpec {
        pre: 1500,
        late: 150,
        bots: 20,
        stock: 150,
        admit_per_sec: 100,
        admission_secs: 120,
        lead_secs: 3,
        walk_away: 10,
        health: 2000,
    };
    let summary = stress::run_and_verify(&env, &common(), &Scenario::Queue(spec)).await;
    env.shutdown().await;
    let s = summary.unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    let q = s.queue.expect("queue facts");
    assert_eq!(q.places, 1650, "{q:?}");
    assert_eq!((q.pre_queue, q.late), (1500, 150), "{q:?}");
    assert_eq!((q.orders, q.orders_without_admission), (150, 0), "{q:?}");
    // Most bots bought out of turn and were refused; the stock went on turns.
    assert!(q.bot_purchases_not_admitted > 250, "{q:?}");
    assert!(q.turns_won + q.bot_purchases_created >= 150, "{q:?}");
    assert!(q.sold_out_reads > 0, "{q:?}");
    assert!(q.admitted_per_sec.is_some(), "{q:?}");
    let sampling = s.sampling.expect("sampled");
    assert!(sampling.samples > 4 && sampling.failed == 0, "{sampling:?}");
}

#[tokio::test]
async fn the_queue_checks_fail_a_line_drawn_in_join_order_or_with_a_gap() {
    let db = fresh_db().await;
    let (sale, _, _) = consistent_sale(&db).await;
    sqlx::query("update sale set waiting_room = true where id = $1")
        .bind(sale.id)
        .execute(&db)
        .await
        .unwrap();
    // 600 more shoppers in line, placed in the order they joined.
    let shoppers: Vec<i64> = sqlx::query_scalar(
        "insert into app_user (username, email, password_hash)
         select 'q' || g, 'q' || g || '@x.test', '!' from generate_series(1, 600) g returning id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    sqlx::query(
        "insert into sale_queue (sale_id, drawn_at, last_position) values ($1, now(), 600)",
    )
    .bind(sale.id)
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "insert into queue_ticket (sale_id, user_id, position)
         select $1, u, row_number() over (order by n)::int from unnest($2::bigint[]) with ordinality as x(u, n)",
    )
    .bind(sale.id)
    .bind(&shoppers)
    .execute(&db)
    .await
    .unwrap();
    let run = QueueRun {
        sale_id: sale.id,
        stock: 10,
        admit_per_sec: 100,
        pre: shoppers
            .iter()
            .map(|&u| stress::scenario::Joined {
                user_id: u,
                sent_us: 0,
                done_us: 1,
                position: None,
            })
            .collect(),
        ..QueueRun::default()
    };
    let (v, facts) = queue::check(&db, &run).await.unwrap();
    let r = rules(&v);
    assert!(r.contains(&"the_draw_is_random"), "{v:?}");
    assert!(facts.rho_join_order > 0.99, "{facts:?}");
    // The consistent sale's two orders were bought without a ticket.
    assert!(r.contains(&"no_purchase_without_admission"), "{v:?}");
    assert!(!r.contains(&"every_place_given_once"), "{v:?}");
    // A gap in the places.
    sqlx::query("update queue_ticket set position = 700 where sale_id = $1 and position = 300")
        .bind(sale.id)
        .execute(&db)
        .await
        .unwrap();
    let (v, _) = queue::check(&db, &run).await.unwrap();
    assert!(rules(&v).contains(&"every_place_given_once"), "{v:?}");
    assert!(!rules(&v).contains(&"every_ticket_is_an_accounts"), "{v:?}");
    // A ticket of nobody (no foreign key refuses it).
    sqlx::query("insert into queue_ticket (sale_id, user_id) values ($1, -1)")
        .bind(sale.id)
        .execute(&db)
        .await
        .unwrap();
    let (v, _) = queue::check(&db, &run).await.unwrap();
    assert!(rules(&v).contains(&"every_ticket_is_an_accounts"), "{v:?}");
}

#[tokio::test]
async fn an_order_counts_as_admitted_when_its_ticket_was_used_after_the_admission() {
    let db = fresh_db().await;
    let (sale, _, users) = consistent_sale(&db).await;
    sqlx::query("update sale set waiting_room = true, admission_secs = 120 where id = $1")
        .bind(sale.id)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("insert into sale_queue (sale_id, drawn_at, last_position, admitted_through) values ($1, now(), 2, 2)")
        .bind(sale.id)
        .execute(&db)
        .await
        .unwrap();
    // The first buyer's transaction began 5 ms before its admission committed
    // (it waited for the sale's lock) and used the ticket after it: admitted.
    // The second buyer's ticket was used before its admission: not admitted.
    sqlx::query(
        "insert into queue_ticket (sale_id, user_id, position, admitted_until, used_at, order_id)
         select $1, o.user_id, x.p,
                o.created_at + x.admitted + interval '120 seconds', o.created_at + x.used, o.id
           from purchase_order o
           join (values ($2::bigint, 1, interval '5 ms', interval '10 ms'),
                        ($3::bigint, 2, interval '1 s', interval '500 ms')) as x(u, p, admitted, used)
             on x.u = o.user_id
          where o.sale_id = $1",
    )
    .bind(sale.id)
    .bind(users[0])
    .bind(users[1])
    .execute(&db)
    .await
    .unwrap();
    let run = QueueRun {
        sale_id: sale.id,
        stock: 10,
        admit_per_sec: 100,
        ..QueueRun::default()
    };
    let (v, facts) = queue::check(&db, &run).await.unwrap();
    assert_eq!(
        (facts.orders, facts.orders_without_admission),
        (2, 1),
        "{facts:?}"
    );
    assert!(
        rules(&v).contains(&"no_purchase_without_admission"),
        "{v:?}"
    );
}

#[test]
fn a_sample_with_a_line_out_of_order_is_a_violation() {
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].queue_mismatch = 1;
    let v = during::check(&s).expect("a gap in the places");
    assert!(
        v.detail.starts_with("sale 7: the waiting room's places"),
        "{v:?}"
    );
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].unadmitted_orders = 2;
    let v = during::check(&s).expect("an order without admission");
    assert!(
        v.detail
            .starts_with("sale 7: 2 order(s) not bought on an admitted ticket"),
        "{v:?}"
    );
    let mut s = snapshot_of(8, 2, 2);
    s.sales[0].dangling_tickets = 1;
    let v = during::check(&s).expect("a ticket with another's order");
    assert!(
        v.detail
            .starts_with("sale 7: 1 ticket(s) without their line"),
        "{v:?}"
    );
}
