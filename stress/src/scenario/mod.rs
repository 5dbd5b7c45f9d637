//! The scenarios. Each provisions what it needs, fires its load and returns a
//! [`Run`] for verification and reporting. The buying scenarios are here; the
//! soak and the polls are in `soak`, the catalog's carts in `cart`.

mod cart;
mod checkout;
mod queue;
mod soak;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::environment::Environment;
use crate::load::{run_jobs, Attempt, Ledger, Load};
use crate::provision::{self, AdminLogin, Buyer, SaleInfo, SaleSpec};

pub use cart::{cart, random_cart, CartArgs, CartSpec};
pub use checkout::{checkout, fate, Fate, Shares};
pub use queue::{queue, Joined, QueueArgs, QueueRun, QueueSpec, Turn};
pub use soak::{mixed, poll};

/// Options shared by all scenarios.
#[derive(Clone, Debug)]
pub struct Common {
    pub connections: usize,
    pub timeout: Duration,
    pub admin: AdminLogin,
    /// The `hold_secs` of the sales the buying scenarios make (0: none).
    pub hold_secs: i64,
    /// A fault to strike in the middle of the run.
    pub chaos: Option<crate::chaos::Chaos>,
}

/// What a run did, for the verifier and the report.
pub struct Run {
    pub scenario: &'static str,
    pub params: serde_json::Value,
    pub environment: String,
    pub sales: Vec<SaleInfo>,
    /// Every request of the run (the verifier needs them all).
    pub ledger: Ledger,
    /// Requests sent before this offset (warm-up, selling the stock before a
    /// storm) are left out of the measurements.
    pub measure_from_us: u64,
    /// How long the measured load ran.
    pub elapsed: Duration,
    /// What the `queue` scenario saw of its waiting room.
    pub queue: Option<Box<QueueRun>>,
}

/// Sleeps until the sale opens by the database clock.
pub(crate) async fn until_open(env: &Environment, sale: &SaleInfo) -> anyhow::Result<()> {
    let now = provision::server_time(env).await?;
    let wait = (sale.starts_at - now).num_milliseconds();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    Ok(())
}

/// `exact`: `buyers` distinct buyers press buy on a sale of `stock` as its
/// window opens. Each retries "not started yet", "rate limited" and "busy"
/// until it gets a final answer.
pub async fn exact(
    env: &Environment,
    c: &Common,
    stock: i64,
    buyers: usize,
) -> anyhow::Result<Run> {
    let people = provision::buyers(env, buyers, "ex").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let sale = provision::sale(env, &admin, SaleSpec::new(stock, 1500, c.hold_secs)).await?;
    let mut load = Load::for_env(env, c)?;
    until_open(env, &sale).await?;
    load.reset_clock();
    let sale_id = sale.id;
    let ledger = run_jobs(
        c.connections,
        people,
        "exact",
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger| {
            let load = load.clone();
            async move {
                load.purchase_until_final(w, &jobs[i], sale_id, 100, &mut ledger)
                    .await;
                ledger
            }
        },
    )
    .await;
    Ok(Run {
        scenario: "exact",
        params: json!({"stock": stock, "buyers": buyers, "hold_secs": c.hold_secs, "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// `dupes`: `users` buyers each fire `per_user` purchases at once.
pub async fn dupes(
    env: &Environment,
    c: &Common,
    users: usize,
    per_user: usize,
) -> anyhow::Result<Run> {
    let people = provision::buyers(env, users, "du").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let sale =
        provision::sale(env, &admin, SaleSpec::new(users as i64, -1000, c.hold_secs)).await?;
    // Each buyer's requests sit next to each other, so they are in flight together.
    let jobs: Vec<Buyer> = people
        .iter()
        .flat_map(|b| std::iter::repeat_n(b.clone(), per_user))
        .collect();
    let mut load = Load::for_env(env, c)?;
    load.reset_clock();
    let sale_id = sale.id;
    let ledger = run_jobs(
        c.connections,
        jobs,
        "dupes",
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger| {
            let load = load.clone();
            async move {
                load.purchase_until_final(w, &jobs[i], sale_id, 20, &mut ledger)
                    .await;
                ledger
            }
        },
    )
    .await;
    Ok(Run {
        scenario: "dupes",
        params: json!({"users": users, "per_user": per_user, "hold_secs": c.hold_secs, "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// `window`: `buyers` purchases spread evenly from one second before a
/// `window_ms` window opens to one second after it closes. Each buyer tries
/// once, at its moment.
pub async fn window(
    env: &Environment,
    c: &Common,
    buyers: usize,
    window_ms: i64,
) -> anyhow::Result<Run> {
    let people = provision::buyers(env, buyers, "wi").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let lead_ms = 2500;
    let sale = provision::sale(
        env,
        &admin,
        SaleSpec {
            duration_ms: window_ms,
            ..SaleSpec::new(buyers as i64, lead_ms, c.hold_secs)
        },
    )
    .await?;
    let mut load = Load::for_env(env, c)?;
    // Fire from one second before the start to one second after the end.
    let server_now = provision::server_time(env).await?;
    let to_open = (sale.starts_at - server_now).num_milliseconds().max(0) as u64;
    let first = to_open.saturating_sub(1000);
    let span = window_ms as u64 + 2000;
    load.reset_clock();
    let n = people.len().max(1) as u64;
    let ledger = run_jobs(c.connections, people, "window", {
        let sale_id = sale.id;
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger| {
            let load = load.clone();
            async move {
                let at = Duration::from_millis(first + span * i as u64 / n);
                let now = load.elapsed();
                if at > now {
                    tokio::time::sleep(at - now).await;
                }
                let attempt = load.purchase(w, &jobs[i], sale_id, &mut ledger).await;
                if let Attempt::Retry(wait) = attempt {
                    // Rate limited or busy: once more; "not started" is an answer here.
                    if !matches!(
                        ledger.samples.last().and_then(|s| s.code.as_deref()),
                        Some("sale_not_started")
                    ) {
                        tokio::time::sleep(wait).await;
                        load.purchase(w, &jobs[i], sale_id, &mut ledger).await;
                    }
                }
                ledger
            }
        }
    })
    .await;
    Ok(Run {
        scenario: "window",
        params: json!({"buyers": buyers, "window_ms": window_ms, "hold_secs": c.hold_secs, "connections": c.connections}),
        environment: env.describe(),
        elapsed: max_end(&ledger),
        sales: vec![sale],
        ledger,
        measure_from_us: 0,
        queue: None,
    })
}

/// `soldout`: `stock` units are sold, then `buyers` other buyers storm the
/// empty sale; only the storm is measured (the rejection path).
pub async fn soldout(
    env: &Environment,
    c: &Common,
    stock: i64,
    buyers: usize,
) -> anyhow::Result<Run> {
    let first = provision::buyers(env, stock as usize, "so").await?;
    let storm = provision::buyers(env, buyers, "st").await?;
    let admin = provision::admin_token(env, &c.admin).await?;
    let sale = provision::sale(env, &admin, SaleSpec::new(stock, -1000, c.hold_secs)).await?;
    let mut load = Load::for_env(env, c)?;
    load.reset_clock();
    let sale_id = sale.id;
    let buy = {
        let load = load.clone();
        move |w, jobs: Arc<Vec<Buyer>>, i, mut ledger: Ledger| {
            let load = load.clone();
            async move {
                load.purchase_until_final(w, &jobs[i], sale_id, 100, &mut ledger)
                    .await;
                ledger
            }
        }
    };
    let mut ledger = run_jobs(c.connections, first, "sell", buy.clone()).await;
    let measure_from_us = load.elapsed().as_micros() as u64;
    let storm_ledger = run_jobs(c.connections, storm, "storm", buy).await;
    let storm_end = max_end(&storm_ledger);
    ledger.merge(storm_ledger);
    Ok(Run {
        scenario: "soldout",
        params: json!({"stock": stock, "buyers": buyers, "hold_secs": c.hold_secs, "connections": c.connections}),
        environment: env.describe(),
        elapsed: storm_end.saturating_sub(Duration::from_micros(measure_from_us)),
        sales: vec![sale],
        ledger,
        measure_from_us,
        queue: None,
    })
}

/// The time of the last answer in a ledger.
pub(crate) fn max_end(l: &Ledger) -> Duration {
    Duration::from_micros(
        l.samples
            .iter()
            .map(|s| s.sent_us + s.latency_us)
            .max()
            .unwrap_or(0),
    )
}

/// Rejects option values that would make a run meaningless.
pub fn check_positive(name: &str, v: i64) -> anyhow::Result<()> {
    anyhow::ensure!(v > 0, "--{name} must be positive");
    Ok(())
}

/// A scenario and its parameters, as chosen on the command line.
#[derive(Clone, Debug)]
pub enum Scenario {
    Exact {
        stock: i64,
        buyers: usize,
    },
    Dupes {
        users: usize,
        per_user: usize,
    },
    Window {
        buyers: usize,
        window_ms: i64,
    },
    Soldout {
        stock: i64,
        buyers: usize,
    },
    Checkout {
        stock: i64,
        buyers: usize,
        shares: Shares,
    },
    Mixed {
        duration: Duration,
        sales: usize,
        stock: i64,
        users: usize,
    },
    Status {
        requests: usize,
    },
    Health {
        requests: usize,
    },
    /// Carts over a small catalog, checked out, paid or abandoned.
    Cart(CartSpec),
    /// A waiting-room sale: a pre-queue, late joiners, buying on admission.
    Queue(QueueSpec),
}

impl Scenario {
    /// Runs the scenario against `env`.
    pub async fn run(&self, env: &Environment, c: &Common) -> anyhow::Result<Run> {
        match *self {
            Scenario::Exact { stock, buyers } => exact(env, c, stock, buyers).await,
            Scenario::Dupes { users, per_user } => dupes(env, c, users, per_user).await,
            Scenario::Window { buyers, window_ms } => window(env, c, buyers, window_ms).await,
            Scenario::Soldout { stock, buyers } => soldout(env, c, stock, buyers).await,
            Scenario::Checkout {
                stock,
                buyers,
                shares,
            } => checkout(env, c, stock, buyers, shares).await,
            Scenario::Mixed {
                duration,
                sales,
                stock,
                users,
            } => mixed(env, c, duration, sales, stock, users).await,
            Scenario::Status { requests } => poll(env, c, requests, false).await,
            Scenario::Health { requests } => poll(env, c, requests, true).await,
            Scenario::Cart(spec) => cart(env, c, spec).await,
            Scenario::Queue(spec) => queue(env, c, spec).await,
        }
    }
}
