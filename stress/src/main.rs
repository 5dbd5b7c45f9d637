//! `stress`: the flashsale load harness.
//!
//! ```text
//! cargo run --release -p stress -- exact --stock 1000 --buyers 20000 --connections 256
//! cargo run --release -p stress -- exact --stock 30000 --buyers 60000 --instances 2 --chaos kill-instance@3s
//! cargo run --release -p stress -- cart --products 20 --copies 5 --buyers 5000 --hold-secs 3
//! ```
//!
//! Exits 0 when every invariant held, 1 on any violation, 2 when the run
//! could not be carried out.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod command;

use command::{ceiling, execute, hold_db};
use stress::scenario::{self, Scenario};

#[derive(Parser)]
#[command(
    name = "stress",
    about = "Load flashsale, then check that it kept every promise."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N units, U distinct buyers pressing buy as the window opens.
    Exact {
        #[arg(long, default_value_t = 1000)]
        stock: i64,
        #[arg(long, default_value_t = 20_000)]
        buyers: usize,
        #[command(flatten)]
        hold: HoldArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// M buyers, each firing K purchases at once.
    Dupes {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        per_user: usize,
        #[command(flatten)]
        hold: HoldArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Purchases straddling the start and the end of a short window.
    Window {
        #[arg(long, default_value_t = 4000)]
        buyers: usize,
        #[arg(long, default_value_t = 2000)]
        window_ms: i64,
        #[command(flatten)]
        hold: HoldArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A storm of buyers after the stock is gone (the rejection path).
    Soldout {
        #[arg(long, default_value_t = 100)]
        stock: i64,
        #[arg(long, default_value_t = 20_000)]
        buyers: usize,
        #[command(flatten)]
        hold: HoldArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Many more shoppers than units on a sale with a hold: each winner pays,
    /// is declined or walks away; released units are sold again until every
    /// unit is paid or the shoppers run out.
    Checkout {
        #[arg(long, default_value_t = 1000)]
        stock: i64,
        #[arg(long, default_value_t = 10_000)]
        buyers: usize,
        /// Seconds a winner has to pay.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=3600))]
        hold_secs: i64,
        /// Percent of the winners who pay.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=100))]
        pay: u32,
        /// Percent of the winners whose card is declined (the rest walk away).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100))]
        decline: u32,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Shoppers with random carts over a small catalog of a few copies per
    /// book: each checks out, then pays, is declined or walks away; a shopper
    /// refused `out_of_stock` takes what is left, or comes back later.
    Cart {
        #[command(flatten)]
        cart: scenario::CartArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A waiting-room sale: a pre-queue joined in a storm, late joiners, and
    /// everyone buying on its turn; the draw's fairness, the admission rate
    /// and the winners are checked against the database.
    Queue {
        #[command(flatten)]
        queue: scenario::QueueArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A soak of status polls, browsing and purchases on several sales, one hot.
    Mixed {
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        #[arg(long, default_value_t = 4)]
        sales: usize,
        #[arg(long, default_value_t = 1000)]
        stock: i64,
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        #[command(flatten)]
        hold: HoldArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A storm of `/status` polls of one live sale (served from memory).
    Status {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A storm of `/healthz`: the server's floor, for comparison.
    Health {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// PostgreSQL's own purchase ceiling on one hot row (pgbench, no HTTP), for
    /// three strategies: one interactive transaction per purchase, one
    /// statement per purchase, 64 purchases per transaction.
    Ceiling {
        /// Seconds per strategy.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// pgbench clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Write the readings as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Start a private PostgreSQL like the harness's, print its URL and hold it
    /// until Ctrl-C (for pgbench or psql in the same sitting).
    Db {
        #[arg(long, default_value = "flashsale-stress-db")]
        dir: PathBuf,
    },
    /// Run a flashsale server (used by the harness for its instances).
    #[command(name = "__serve", hide = true)]
    Serve,
}

/// The hold of the sales a buying scenario makes.
#[derive(Args, Clone, Copy)]
struct HoldArgs {
    /// The sale's `hold_secs`: a win is held this long for payment, then
    /// released (0: confirmed at once).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=3600))]
    hold_secs: i64,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Concurrent connections (requests in flight).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// flashsale instances to start (self-contained mode).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Drive this running instance instead (repeatable; loopback only).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// The instances' database: provision buyers and verify in SQL.
    #[arg(long)]
    database_url: Option<String>,
    /// The instances' JWT_SECRET: sign buyers' tokens locally.
    #[arg(long)]
    jwt_secret: Option<String>,
    /// Admin account for creating sales when the database is not reachable.
    #[arg(long)]
    admin_user: Option<String>,
    #[arg(long)]
    admin_password: Option<String>,
    /// Per-request timeout; a timed-out purchase counts as an unknown outcome.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// A fault mid-run (self-contained mode): `kill-instance` (SIGKILL to one
    /// of 2+ instances), `restart-db` (PostgreSQL fast restart), `crash-db`
    /// (SIGKILL to the postmaster, then crash recovery) or `failover`
    /// (immediate stop of the primary and promotion of the `--replica`),
    /// optionally `@TIME` after the load starts, e.g. `@3s`, `@500ms`
    /// (default 2 s).
    #[arg(long, value_name = "KIND[@TIME]")]
    chaos: Option<stress::chaos::Chaos>,
    /// Put a pooler between the self-started instances and their PostgreSQL,
    /// as in production: `pgbouncer` (transaction mode; their `LISTEN` goes
    /// straight to the cluster).
    #[arg(long, value_parser = ["pgbouncer"])]
    pooler: Option<String>,
    /// Server connections the pooler lends in all (default: 10 per instance,
    /// a third of the instances' own pools).
    #[arg(long, requires = "pooler")]
    pool_size: Option<u32>,
    /// Start a hot standby of the private cluster (self-contained mode) and
    /// send the instances' reads that tolerate lag to it (`DATABASE_READ_URL`).
    #[arg(long)]
    replica: bool,
    /// Make the `--replica` a synchronous standby: the primary acknowledges
    /// a commit once the standby has it on disk.
    #[arg(long, requires = "replica")]
    sync_standby: bool,
    /// Extra environment for self-started instances, `KEY=VALUE` (repeatable).
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report with charts here.
    #[arg(long)]
    html: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Serve = cli.command {
        serve();
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stress: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async {
        match run(cli.command).await {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("stress: {e:#}");
                2
            }
        }
    });
    std::process::exit(code);
}

/// The real flashsale server, configured from the environment.
fn serve() {
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            let config = match flashsale::config::Config::from_env() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("flashsale: {e}");
                    return 2;
                }
            };
            flashsale::telemetry::init(config.log_json);
            match flashsale::run::run(flashsale::run::Command::Serve, config).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("flashsale: {e:#}");
                    1
                }
            }
        }),
        Err(_) => 2,
    };
    std::process::exit(code);
}

async fn run(cmd: Cmd) -> anyhow::Result<bool> {
    let (common, hold, scenario) = match cmd {
        Cmd::Exact {
            stock,
            buyers,
            hold,
            common,
        } => {
            scenario::check_positive("stock", stock)?;
            (common, hold, Scenario::Exact { stock, buyers })
        }
        Cmd::Dupes {
            users,
            per_user,
            hold,
            common,
        } => (common, hold, Scenario::Dupes { users, per_user }),
        Cmd::Window {
            buyers,
            window_ms,
            hold,
            common,
        } => {
            scenario::check_positive("window-ms", window_ms)?;
            (common, hold, Scenario::Window { buyers, window_ms })
        }
        Cmd::Soldout {
            stock,
            buyers,
            hold,
            common,
        } => {
            scenario::check_positive("stock", stock)?;
            (common, hold, Scenario::Soldout { stock, buyers })
        }
        Cmd::Checkout {
            stock,
            buyers,
            hold_secs,
            pay,
            decline,
            common,
        } => {
            scenario::check_positive("stock", stock)?;
            (
                common,
                HoldArgs { hold_secs },
                Scenario::Checkout {
                    stock,
                    buyers,
                    shares: scenario::Shares { pay, decline },
                },
            )
        }
        Cmd::Cart { cart, common } => (
            common,
            HoldArgs {
                hold_secs: cart.hold_secs,
            },
            Scenario::Cart(cart.spec()),
        ),
        Cmd::Queue { queue, common } => (common, NO_HOLD, Scenario::Queue(queue.spec())),
        Cmd::Mixed {
            duration_secs,
            sales,
            stock,
            users,
            hold,
            common,
        } => (
            common,
            hold,
            Scenario::Mixed {
                duration: Duration::from_secs(duration_secs),
                sales,
                stock,
                users,
            },
        ),
        Cmd::Status { requests, common } => (common, NO_HOLD, Scenario::Status { requests }),
        Cmd::Health { requests, common } => (common, NO_HOLD, Scenario::Health { requests }),
        Cmd::Ceiling {
            seconds,
            clients,
            json,
        } => return ceiling(seconds, clients, json).await,
        Cmd::Db { dir } => return hold_db(dir).await,
        Cmd::Serve => unreachable!("handled before the runtime starts"),
    };
    execute(common, hold, scenario).await
}

const NO_HOLD: HoldArgs = HoldArgs { hold_secs: 0 };
