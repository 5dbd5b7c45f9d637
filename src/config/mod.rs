//! Typed settings, read once from the environment at start.
//!
//! Every variable (its name, default, accepted values and meaning) is
//! declared once, in [`vars::VARS`]; the parser, the `Default` impls below and
//! the configuration table of `README.md` all come from those declarations.
//!
//! Secrets (`JWT_SECRET`, the SMTP and database URLs, which carry passwords)
//! are held as [`SecretString`]s, whose `Debug` prints no value: a `Config`
//! can be logged whole.

mod parse;
mod table;
pub mod vars;

#[cfg(test)]
mod tests;

use std::env;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
/// The wrappers that keep secrets out of `Debug` output: [`SecretString`]
/// for text, [`SecretBox`] for any other secret value (read with
/// [`ExposeSecret::expose_secret`]).
pub use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Where the database comes from.
#[derive(Clone, Debug)]
pub enum DatabaseSource {
    /// A server the operator runs (the URLs may carry its password).
    Url(DatabaseUrls),
    /// The private cluster started by the process itself, in this directory.
    Embedded { data_dir: PathBuf },
}

/// The operator's PostgreSQL.
#[derive(Clone, Debug)]
pub struct DatabaseUrls {
    /// The primary (`DATABASE_URL`), perhaps through a pooler: every read
    /// and write.
    pub primary: SecretString,
    /// Straight to the primary (`DATABASE_LISTEN_URL`): `LISTEN` and the
    /// migrations, which keep session state. `None`: `primary`.
    pub listen: Option<SecretString>,
    /// `primary` is a transaction-mode pooler (`DATABASE_POOLER=transaction`).
    pub pooled: bool,
    /// A streaming replica for reads that tolerate lag (`DATABASE_READ_URL`).
    pub read: Option<SecretString>,
    /// How far behind the replica may be (`DATABASE_READ_MAX_LAG_MS`).
    pub read_max_lag: std::time::Duration,
}

/// Everything the process reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub database: DatabaseSource,
    pub pg_bin_dir: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub workers: Option<usize>,
    /// `None` only in embedded mode, where the secret is generated and kept in
    /// the data directory.
    pub jwt_secret: Option<SecretString>,
    /// `None` only in embedded mode, like `jwt_secret`.
    pub payment_webhook_secret: Option<SecretString>,
    pub log_json: bool,
    pub app: AppSettings,
}

/// The settings the running application needs (shared by tests, which build
/// them directly).
#[derive(Clone, Debug)]
pub struct AppSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bcrypt_cost: u32,
    pub purchase_rate: Rate,
    /// Purchase attempts per client IP (off when `None`), beside the per-user
    /// limit.
    pub purchase_ip_rate: Option<Rate>,
    pub auth_rate: Rate,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub purchase: PurchaseSettings,
    pub email: EmailSettings,
    /// `/metrics` asks for this bearer token; `None`: open.
    pub metrics_token: Option<SecretString>,
    pub payment_provider: PaymentProvider,
    /// How long a checked-out cart holds its books for payment.
    pub cart_hold_secs: u32,
}

/// Where emails go.
#[derive(Clone, Debug)]
pub enum MailTransport {
    /// Nowhere yet: emails wait in the outbox (no workers run).
    Off,
    /// An SMTP server, by lettre's connection URL (which may carry the
    /// password).
    Smtp(SecretString),
    /// One `.eml` file per email in this directory.
    Files(PathBuf),
}

impl PartialEq for MailTransport {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (MailTransport::Off, MailTransport::Off) => true,
            (MailTransport::Smtp(a), MailTransport::Smtp(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            (MailTransport::Files(a), MailTransport::Files(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for MailTransport {}

/// UTC times of day of the scheduled jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobTimes {
    pub digest_at: NaiveTime,
    pub report_at: NaiveTime,
    pub announce_at: NaiveTime,
}

impl Default for JobTimes {
    /// The declared defaults.
    fn default() -> Self {
        parse::defaults().job_times()
    }
}

/// The outbox, its senders and the scheduled jobs.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    pub transport: MailTransport,
    pub from: String,
    /// Base of the links in emails; `None`: this server's own address.
    pub public_url: Option<String>,
    pub rate: Rate,
    pub workers: usize,
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub claim_timeout: Duration,
    pub poll: Duration,
    /// `None`: this process runs no scheduled jobs.
    pub jobs: Option<JobTimes>,
    pub verify_token_ttl: Duration,
    pub reset_token_ttl: Duration,
}

impl Default for EmailSettings {
    /// The declared defaults, but emails are queued and neither sent nor
    /// scheduled: the embedded and configured modes turn those on (see
    /// [`Config::from_lookup`]).
    fn default() -> Self {
        parse::defaults().email()
    }
}

/// How purchases reach the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseMode {
    /// One locked transaction per sale serves every buyer that queued while
    /// the previous one ran.
    Combined,
    /// One transaction per buyer (the baseline).
    PerPurchase,
}

/// Settings of the purchase engine.
#[derive(Clone, Copy, Debug)]
pub struct PurchaseSettings {
    pub mode: PurchaseMode,
    /// Most buyers served by one combined transaction.
    pub max_batch: usize,
    /// Buyers that may wait for one sale before new ones get `busy`.
    pub queue_limit: usize,
    /// Purchases need a verified email address.
    pub require_verified_email: bool,
}

impl Default for PurchaseSettings {
    /// The declared defaults.
    fn default() -> Self {
        parse::defaults().purchase()
    }
}

/// A token-bucket rate: `per_second` refill and `burst` capacity.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for AppSettings {
    /// The declared defaults, with email as [`EmailSettings::default`].
    fn default() -> Self {
        parse::defaults().app()
    }
}

impl Rate {
    /// A rate; zero values are raised to one.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Rate {
            per_second: NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The shortest accepted `JWT_SECRET`, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The shortest accepted `PAYMENT_WEBHOOK_SECRET`, in bytes.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 32;

/// Who takes the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentProvider {
    /// The built-in simulated card processor
    /// ([`crate::payment::test_provider`]).
    Test,
}
/// The lowest accepted bcrypt cost.
pub const MIN_BCRYPT_COST: u32 = 4;

impl Config {
    /// Reads the environment. Every missing or malformed variable is reported
    /// in one message.
    pub fn from_env() -> Result<Config, String> {
        Self::from_lookup(|k| env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        parse::Env::new(get).config()
    }
}
