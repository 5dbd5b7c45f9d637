//! The human summary printed on stdout: totals, the fault and its recovery
//! (`--chaos`), deadlocks, latency percentiles by kind of request, every
//! answer counted, and the verdict.

use std::fmt::Write as _;

use super::Summary;

/// The human summary.
pub fn text(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "scenario   {}  {}", s.scenario, s.params);
    let _ = writeln!(o, "against    {}", s.environment);
    let _ = writeln!(o, "duration   {:.2} s", s.duration_secs);
    let _ = writeln!(
        o,
        "requests   {}  ({:.0}/s)",
        s.requests, s.requests_per_sec
    );
    // A cart run buys from the catalog, not from sales: its lines are below.
    if s.cart.is_none() {
        let _ = writeln!(
            o,
            "purchases  {} created  ({:.0}/s)",
            s.purchases_created, s.purchases_per_sec
        );
    }
    if let Some(t) = s.tally.as_ref().filter(|_| s.cart.is_none()) {
        let _ = writeln!(
            o,
            "sold       {} units in live orders; {} order(s) released (holds expired or cancelled)",
            t.units_sold, t.orders_released
        );
    }
    if let Some(t) = s.time_to_sell_out_secs {
        let rate = s.sell_out_rate_per_sec.unwrap_or(0.0);
        let _ = writeln!(
            o,
            "sold out   in {t:.3} s  ({rate:.0} units/s while stock lasted)"
        );
    }
    let _ = writeln!(
        o,
        "unknown    {} outcome(s) (sent, then cut or timed out)",
        s.unknown_outcomes
    );
    if s.told_late > 0 {
        let _ = writeln!(
            o,
            "told late  {} order(s) answered busy, then already_purchased on the retry",
            s.told_late
        );
    }
    if s.refused_connections > 0 || s.unreachable > 0 {
        let _ = writeln!(
            o,
            "rerouted   {} refused connection(s) sent on to another instance; {} request(s) refused by all",
            s.refused_connections, s.unreachable
        );
    }
    if let Some(c) = &s.cart {
        cart(&mut o, s, c);
    }
    if let Some(q) = &s.queue {
        queue(&mut o, q);
    }
    if let Some(p) = &s.payments {
        payments(&mut o, p);
    }
    if let Some(c) = &s.chaos {
        chaos(&mut o, c);
    }
    if let Some(d) = &s.deadlocks {
        let logged = match (d.before.logged, d.after.logged) {
            (Some(b), Some(a)) => format!(", {} line(s) in the server log", a.saturating_sub(b)),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "deadlocks  {} (pg_stat_database.deadlocks {} -> {}{}{logged})",
            d.during(),
            d.before.counted,
            d.after.counted,
            if d.counter_reset {
                ", reset by crash recovery"
            } else {
                ""
            }
        );
    }
    if let Some(p) = &s.pooler {
        let _ = writeln!(
            o,
            "pooler     PgBouncer in transaction mode: at most {} server connection(s) at once, pool of {} ({} samples)",
            p.max_server_connections, p.pool_size, p.samples
        );
    }
    if let Some(r) = &s.replica {
        let _ = writeln!(
            o,
            "replica    {:.0} reads served by the replica, {:.0} by the primary (replica not fresh); replay lag at most {:.1} ms, streaming in {} of {} samples",
            r.replica_reads, r.primary_reads, r.max_replay_lag_ms, r.streaming_samples, r.samples
        );
    }
    match &s.sampling {
        Some(x) => {
            let _ = writeln!(
                o,
                "sampled    {} snapshot(s) of the invariants during the run, {} failed, {} unread",
                x.samples, x.failed, x.errors
            );
        }
        None => {
            let _ = writeln!(o, "sampled    none (no database access)");
        }
    }
    let _ = writeln!(
        o,
        "\nlatency (ms)   count      p50      p90      p99    p99.9      max"
    );
    for l in &s.latency {
        let _ = writeln!(
            o,
            "{:<10} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            l.kind, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    let _ = writeln!(o, "\nanswers");
    for a in &s.answers {
        let status = if a.status == 0 {
            "none".to_string()
        } else {
            a.status.to_string()
        };
        let _ = writeln!(
            o,
            "{:<10} {:>5} {:<22} {:>9}",
            a.kind,
            status,
            a.code.as_deref().unwrap_or("-"),
            a.count
        );
    }
    let _ = writeln!(o);
    if s.violations.is_empty() {
        let _ = writeln!(o, "verdict    PASS: every invariant held");
    } else {
        let _ = writeln!(o, "verdict    FAIL: {} violation(s)", s.violations.len());
        for v in &s.violations {
            let _ = writeln!(o, "  - {}: {}", v.rule, v.detail);
        }
    }
    o
}

fn chaos(o: &mut String, c: &crate::chaos::ChaosFacts) {
    let what = match c.killed_instance {
        Some(i) => format!("{} (instance {i})", c.kind),
        None => c.kind.to_string(),
    };
    let _ = writeln!(
        o,
        "chaos      {what} at {:.2} s, after {} purchase(s) created",
        c.struck_at_secs, c.created_before
    );
    let failover = c.failover.is_some();
    if let Some(down) = c.db_down_secs {
        let back = if failover {
            "the promoted standby accepted writes"
        } else {
            "PostgreSQL accepted connections again"
        };
        let _ = writeln!(o, "           {back} {down:.2} s after the fault");
    }
    let from = match (failover, c.db_down_secs.is_some()) {
        (true, _) => "from the promotion",
        (false, true) => "from PostgreSQL accepting again",
        (false, false) => "from the kill, on a survivor",
    };
    match c.recovery_secs {
        Some(r) => {
            let _ = writeln!(o, "recovery   next 201 {r:.3} s {from}");
        }
        None => {
            let _ = writeln!(o, "recovery   no 201 came after the fault ({from})");
        }
    }
    let after_back = if c.db_down_secs.is_some() {
        format!(
            ", {} of them after {}",
            c.busy_during_recovery,
            if failover {
                "the promotion"
            } else {
                "PostgreSQL was back"
            }
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "           {} busy answer(s) from the fault to that 201{after_back}",
        c.busy_since_fault
    );
    if let Some(f) = &c.failover {
        let _ = writeln!(o, "lost       {}", lost_line(f));
    }
}

/// What a failover lost, said plainly.
fn lost_line(f: &crate::chaos::FailoverFacts) -> String {
    match (f.lost_acknowledged, f.synchronous) {
        (None, _) => "not counted: the database was not reachable".into(),
        (Some(0), true) => "no acknowledged order (synchronous standby)".into(),
        (Some(0), false) => {
            "no acknowledged order, by luck: the standby was asynchronous and had received every commit".into()
        }
        (Some(n), true) => format!(
            "{n} acknowledged order(s) (201) missing from the synchronous standby: a broken promise"
        ),
        (Some(n), false) => format!(
            "{n} acknowledged order(s) (201) that the asynchronous standby never received; \
             their buyers were told they had won. --sync-standby loses none"
        ),
    }
}

fn cart(o: &mut String, s: &Summary, c: &crate::verify::catalog::CartFacts) {
    let latency = s
        .latency
        .iter()
        .find(|l| l.kind == "checkout")
        .map_or(String::new(), |l| {
            format!("; latency p50 {:.2} ms, p99 {:.2} ms", l.p50_ms, l.p99_ms)
        });
    let _ = writeln!(
        o,
        "checkouts  {} created  ({:.0}/s) of {} answered ({:.0}/s){latency}; {} left without an answer",
        c.checkouts_created,
        c.checkouts_per_sec,
        c.checkouts_answered,
        c.checkouts_answered_per_sec,
        c.checkouts_unknown
    );
    let refusals: Vec<String> = c
        .refusals
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    let _ = writeln!(
        o,
        "refusals   {}",
        if refusals.is_empty() {
            "none".to_string()
        } else {
            refusals.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "books      {} units put in over {} books; {} sold in live orders, {} of them paid",
        c.units_put_in, c.books, c.units_sold, c.units_paid
    );
}

fn queue(o: &mut String, q: &crate::verify::queue::QueueFacts) {
    let _ = writeln!(
        o,
        "queue      {} places: {} drawn at the start, {} placed after it ({} of them meant for the pre-queue, answered after the draw); admitted through {}",
        q.places, q.pre_queue, q.late, q.overran, q.admitted_through
    );
    let _ = writeln!(
        o,
        "draw       Spearman rho {:.4} with join order, {:.4} with account (limit {:.4})",
        q.rho_join_order, q.rho_account, q.rho_limit
    );
    let rate = q
        .admitted_per_sec
        .map_or("- (under a second of admission)".to_string(), |r| {
            format!("{r:.1}/s over {:.2} s", q.admission_span_secs)
        });
    let _ = writeln!(o, "admission  {rate} against {}/s set", q.admit_per_sec);
    let _ = writeln!(
        o,
        "turns      {} shoppers bought on their turn: {} won, {} sold out ({} of those admitted before the last winner, and asked later); {} orders, {} without admission",
        q.turns_taken, q.turns_won, q.turns_sold_out, q.sold_out_admitted_before_a_winner, q.orders, q.orders_without_admission
    );
    let _ = writeln!(
        o,
        "bots       {} purchases at the start: {} created (their place was admitted), {} not_admitted",
        q.bot_purchases, q.bot_purchases_created, q.bot_purchases_not_admitted
    );
    let _ = writeln!(
        o,
        "joins      {:.0}/s in the bots' burst ({} joins answered in {:.2} s, {} of them the bots'; their first joins alone {:.0}/s) against /healthz {:.0}/s: {:.2} (goal 0.50)",
        q.joins_per_sec, q.burst_joins, q.burst_secs, q.bot_joins, q.first_joins_per_sec, q.health_per_sec, q.join_to_health
    );
    let _ = writeln!(
        o,
        "sold out   {} tickets in line read after the sell-out",
        q.sold_out_reads
    );
}

fn payments(o: &mut String, p: &crate::verify::payments::PaymentFacts) {
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0}/s"));
    let _ = writeln!(
        o,
        "orders     {} paid, {} pending, {} expired, {} payment failed, {} cancelled, {} refunded",
        p.paid, p.pending, p.expired, p.payment_failed, p.cancelled, p.refunded
    );
    let _ = writeln!(
        o,
        "payments   {} succeeded, {} failed, {} left open; paid {}, released {}{}",
        p.payments_succeeded,
        p.payments_failed,
        p.payments_open,
        rate(p.payments_per_sec),
        rate(p.releases_per_sec),
        p.last_paid_secs.map_or(String::new(), |t| format!(
            "; last unit paid {t:.2} s after the start"
        ))
    );
    if p.release_transactions > 0 {
        let _ = writeln!(
            o,
            "releases   {} transaction(s), {:.1} orders each on average, {} at most",
            p.release_transactions,
            p.release_batch_mean.unwrap_or(0.0),
            p.release_batch_max.unwrap_or(0)
        );
    }
}
