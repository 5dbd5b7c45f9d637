//! Every environment variable, declared once: its name, what an unset one
//! means, the values it accepts and one line of documentation.
//!
//! The parser reads each variable through its declaration (the declared
//! default is parsed like a value that was set, and a rejected value is
//! reported with the declared range), the `Default` impls of the settings
//! come from the same declarations, and the configuration table of
//! `README.md` is [`markdown_table`] (a unit test fails when they differ).

use super::{MIN_BCRYPT_COST, MIN_JWT_SECRET_BYTES, MIN_WEBHOOK_SECRET_BYTES};

/// One environment variable.
#[derive(Debug)]
pub struct Var {
    pub name: &'static str,
    pub unset: Unset,
    pub allowed: Allowed,
    /// Its value is never repeated in an error message.
    pub secret: bool,
    /// One line for the documentation table (markdown).
    pub doc: &'static str,
}

/// What an unset (or empty) variable means.
#[derive(Debug)]
pub enum Unset {
    /// This value, read as if it were set.
    Value(&'static str),
    /// No value; the text (markdown) says what the program does instead.
    Means(&'static str),
}

/// The values a variable accepts.
#[derive(Debug)]
pub enum Allowed {
    /// A whole number in `min..=max` (`u64::MAX`: no upper bound).
    Int { min: u64, max: u64 },
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, in any case).
    Flag,
    /// Exactly one of these words.
    OneOf(&'static [&'static str]),
    /// A UTC time of day, `HH:MM`.
    TimeOfDay,
    /// Text starting with one of these prefixes.
    Prefix(&'static [&'static str]),
    /// Text of at least this many bytes.
    MinBytes(usize),
    /// Text the code that reads it checks; described by the text (markdown).
    Text(&'static str),
}

pub use super::table::markdown_table;
use Allowed::{Flag, Int, MinBytes, OneOf, Prefix, Text, TimeOfDay};
use Unset::{Means, Value};

/// The environment the process reads, in the order of the documentation.
pub const VARS: &[Var] = &[
    Var {
        name: "DATABASE_URL",
        unset: Means("unset"),
        allowed: Prefix(&["postgres://", "postgresql://"]),
        secret: true,
        doc: "PostgreSQL to use; unset starts the embedded private cluster. Several hosts (`postgres://u:p@db1:5432,db2:5432/shop?target_session_attrs=read-write`): the engine uses the one that accepts writes and follows a failover to another",
    },
    Var {
        name: "DATABASE_POOLER",
        unset: Value("none"),
        allowed: OneOf(&["none", "transaction"]),
        secret: false,
        doc: "`transaction`: `DATABASE_URL` is a pooler in transaction mode (PgBouncer): no statement cache, each statement in a transaction",
    },
    Var {
        name: "DATABASE_LISTEN_URL",
        unset: Means("`DATABASE_URL`"),
        allowed: Prefix(&["postgres://", "postgresql://"]),
        secret: true,
        doc: "straight to the primary, not through a pooler: `LISTEN` and the migrations; may name several hosts as `DATABASE_URL` may",
    },
    Var {
        name: "DATABASE_READ_URL",
        unset: Means("reads go to the primary"),
        allowed: Prefix(&["postgres://", "postgresql://"]),
        secret: true,
        doc: "a streaming replica for the reads that tolerate lag (catalog, product pages, best sellers, search, seller revenue), behind the same kind of pooler as `DATABASE_URL`",
    },
    Var {
        name: "DATABASE_READ_MAX_LAG_MS",
        unset: Value("1000"),
        allowed: Int { min: 100, max: 600000 },
        secret: false,
        doc: "the replica serves reads only while it has replayed what the primary had half this long ago (checked that often); otherwise they go to the primary",
    },
    Var {
        name: "FLASHSALE_DATA_DIR",
        unset: Value("./flashsale-data"),
        allowed: Text("a directory"),
        secret: false,
        doc: "embedded mode: cluster, its password, the generated JWT secret, the server log",
    },
    Var {
        name: "PG_BIN_DIR",
        unset: Means("searched"),
        allowed: Text("a directory"),
        secret: false,
        doc: "embedded mode: directory with `initdb` and `postgres` (else `PATH`, then the newest `/usr/lib/postgresql/*/bin`)",
    },
    Var {
        name: "HOST",
        unset: Value("127.0.0.1"),
        allowed: Text("an IP address or host name"),
        secret: false,
        doc: "address to listen on",
    },
    Var {
        name: "PORT",
        unset: Value("8080"),
        allowed: Int { min: 0, max: 65_535 },
        secret: false,
        doc: "port to listen on (0 picks a free one)",
    },
    Var {
        name: "WORKERS",
        unset: Means("number of cores"),
        allowed: Int { min: 1, max: 512 },
        secret: false,
        doc: "HTTP worker threads",
    },
    Var {
        name: "JWT_SECRET",
        unset: Means("generated in embedded mode"),
        allowed: MinBytes(MIN_JWT_SECRET_BYTES),
        secret: true,
        doc: "HS256 signing key; **required** with `DATABASE_URL`",
    },
    Var {
        name: "PAYMENT_PROVIDER",
        unset: Value("test"),
        allowed: OneOf(&["test"]),
        secret: false,
        doc: "who takes the money: `test` is the built-in simulated card processor (its page `/pay/{id}`, Stripe's test cards, signed webhooks)",
    },
    Var {
        name: "CART_HOLD_SECS",
        unset: Value("900"),
        allowed: Int { min: 1, max: 86400 },
        secret: false,
        doc: "how long a checked-out cart holds its books for payment",
    },
    Var {
        name: "PAYMENT_WEBHOOK_SECRET",
        unset: Means("generated in embedded mode"),
        allowed: MinBytes(MIN_WEBHOOK_SECRET_BYTES),
        secret: true,
        doc: "HMAC-SHA256 key of the payment provider's webhooks (`Flashsale-Signature`); **required** with `DATABASE_URL`",
    },
    Var {
        name: "ACCESS_TOKEN_TTL_SECS",
        unset: Value("900"),
        allowed: Int { min: 10, max: u64::MAX },
        secret: false,
        doc: "access token lifetime",
    },
    Var {
        name: "REFRESH_TOKEN_TTL_SECS",
        unset: Value("2592000"),
        allowed: Int { min: 60, max: u64::MAX },
        secret: false,
        doc: "refresh token lifetime (30 days)",
    },
    Var {
        name: "BCRYPT_COST",
        unset: Value("12"),
        allowed: Int { min: MIN_BCRYPT_COST as u64, max: 31 },
        secret: false,
        doc: "bcrypt work factor",
    },
    Var {
        name: "PURCHASE_RATE_PER_SEC",
        unset: Value("2"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "purchase attempts per second per user, per process",
    },
    Var {
        name: "PURCHASE_BURST",
        unset: Value("5"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "purchase attempts a user may fire at once",
    },
    Var {
        name: "PURCHASE_IP_RATE_PER_SEC",
        unset: Means("off"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "purchase attempts per second per client IP, per process, beside the per-user limit (off unless set: shoppers behind one carrier NAT share an address); a burst of ten times the rate",
    },
    Var {
        name: "AUTH_RATE_PER_SEC",
        unset: Value("5"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "login / register / refresh attempts per second per client IP, per process",
    },
    Var {
        name: "AUTH_BURST",
        unset: Value("20"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "login / register / refresh attempts an IP may fire at once",
    },
    Var {
        name: "PURCHASE_MODE",
        unset: Value("combined"),
        allowed: OneOf(&["combined", "per_purchase"]),
        secret: false,
        doc: "`combined`: one locked transaction per sale serves every buyer queued meanwhile; `per_purchase`: one transaction per buyer",
    },
    Var {
        name: "PURCHASE_MAX_BATCH",
        unset: Value("512"),
        allowed: Int { min: 1, max: 10_000 },
        secret: false,
        doc: "most buyers one combined transaction serves",
    },
    Var {
        name: "PURCHASE_QUEUE_LIMIT",
        unset: Value("20000"),
        allowed: Int { min: 1, max: 10_000_000 },
        secret: false,
        doc: "buyers that may wait for one sale, per process, before `503 busy`",
    },
    Var {
        name: "DB_MAX_CONNECTIONS",
        unset: Value("20"),
        allowed: Int { min: 1, max: 1000 },
        secret: false,
        doc: "connection pool size (the combined purchase engine has 8 more of its own)",
    },
    Var {
        name: "DB_ACQUIRE_TIMEOUT_MS",
        unset: Value("3000"),
        allowed: Int { min: 1, max: u64::MAX },
        secret: false,
        doc: "longest wait for a pooled connection before answering `503 busy`",
    },
    Var {
        name: "METRICS_TOKEN",
        unset: Means("unset"),
        allowed: MinBytes(16),
        secret: true,
        doc: "when set, `/metrics` answers only `Authorization: Bearer <token>` (401 otherwise)",
    },
    Var {
        name: "REQUIRE_VERIFIED_EMAIL",
        unset: Value("false"),
        allowed: Flag,
        secret: false,
        doc: "`true`: purchases need a verified email address (`403 email_not_verified`)",
    },
    Var {
        name: "PUBLIC_URL",
        unset: Means("`http://HOST:PORT`"),
        allowed: Prefix(&["http://", "https://"]),
        secret: false,
        doc: "the address the links in emails point to",
    },
    Var {
        name: "SMTP_URL",
        unset: Means("unset"),
        allowed: Text("an SMTP URL"),
        secret: true,
        doc: "send email by SMTP (see [Email](#email))",
    },
    Var {
        name: "EMAIL_DIR",
        unset: Means("unset"),
        allowed: Text("a directory"),
        secret: false,
        doc: "without `SMTP_URL`: write each email as an `.eml` file here; embedded mode defaults to `<data dir>/mail`",
    },
    Var {
        name: "EMAIL_FROM",
        unset: Value("flashsale <no-reply@flashsale.localhost>"),
        allowed: Text("an email address"),
        secret: false,
        doc: "sender",
    },
    Var {
        name: "EMAIL_RATE_PER_SEC",
        unset: Value("100"),
        allowed: Int { min: 1, max: 100_000 },
        secret: false,
        doc: "outbound emails per second, shared by all senders of a process",
    },
    Var {
        name: "EMAIL_BURST",
        unset: Value("10"),
        allowed: Int { min: 1, max: 100_000 },
        secret: false,
        doc: "emails that may leave at once within that rate",
    },
    Var {
        name: "EMAIL_WORKERS",
        unset: Value("8"),
        allowed: Int { min: 1, max: 256 },
        secret: false,
        doc: "concurrent senders per process",
    },
    Var {
        name: "EMAIL_MAX_ATTEMPTS",
        unset: Value("8"),
        allowed: Int { min: 1, max: 1000 },
        secret: false,
        doc: "attempts before an email is parked as `dead`",
    },
    Var {
        name: "EMAIL_RETRY_BASE_MS",
        unset: Value("2000"),
        allowed: Int { min: 1, max: 86_400_000 },
        secret: false,
        doc: "first retry delay; doubles with each failed attempt",
    },
    Var {
        name: "EMAIL_RETRY_MAX_MS",
        unset: Value("3600000"),
        allowed: Int { min: 1, max: 604_800_000 },
        secret: false,
        doc: "longest retry delay",
    },
    Var {
        name: "EMAIL_CLAIM_TIMEOUT_SECS",
        unset: Value("300"),
        allowed: Int { min: 1, max: 86_400 },
        secret: false,
        doc: "a claimed email not marked sent by then is claimed again",
    },
    Var {
        name: "EMAIL_POLL_MS",
        unset: Value("1000"),
        allowed: Int { min: 10, max: 600_000 },
        secret: false,
        doc: "how often idle senders look for due emails",
    },
    Var {
        name: "VERIFY_TOKEN_TTL_SECS",
        unset: Value("604800"),
        allowed: Int { min: 60, max: 365 * 24 * 3600 },
        secret: false,
        doc: "lifetime of an email-verification link (7 days)",
    },
    Var {
        name: "RESET_TOKEN_TTL_SECS",
        unset: Value("3600"),
        allowed: Int { min: 60, max: 7 * 24 * 3600 },
        secret: false,
        doc: "lifetime of a password-reset link",
    },
    Var {
        name: "JOBS_ENABLED",
        unset: Value("true"),
        allowed: Flag,
        secret: false,
        doc: "run the scheduled email jobs in this process",
    },
    Var {
        name: "JOB_DIGEST_AT",
        unset: Value("06:00"),
        allowed: TimeOfDay,
        secret: false,
        doc: "when the sellers' daily digest goes out",
    },
    Var {
        name: "JOB_REPORT_AT",
        unset: Value("07:00"),
        allowed: TimeOfDay,
        secret: false,
        doc: "when the monthly revenue report goes out (on the 1st)",
    },
    Var {
        name: "JOB_ANNOUNCE_AT",
        unset: Value("09:00"),
        allowed: TimeOfDay,
        secret: false,
        doc: "when the new-products announcement goes out",
    },
    Var {
        name: "LOG_FORMAT",
        unset: Value("text"),
        allowed: OneOf(&["text", "json"]),
        secret: false,
        doc: "log line format",
    },
    // Read by the log subscriber (`crate::telemetry`), not by the parser.
    Var {
        name: "RUST_LOG",
        unset: Value("info,sqlx=warn"),
        allowed: Text("`tracing` filter directives"),
        secret: false,
        doc: "log filter",
    },
];

/// The declaration of `name`.
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}
