//! Typed settings, read once from the environment at start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | unset | PostgreSQL to use; unset starts the embedded private cluster |
//! | `FLASHSALE_DATA_DIR` | `./flashsale-data` | embedded mode: cluster, generated secrets, logs |
//! | `PG_BIN_DIR` | searched | embedded mode: directory holding `initdb` and `postgres` |
//! | `HOST` | `127.0.0.1` | address to listen on |
//! | `PORT` | `8080` | port to listen on (0 picks a free one) |
//! | `WORKERS` | number of cores | HTTP worker threads |
//! | `JWT_SECRET` | generated in embedded mode | HS256 signing key, at least 32 bytes; required with `DATABASE_URL` |
//! | `ACCESS_TOKEN_TTL_SECS` | `900` | lifetime of access tokens |
//! | `REFRESH_TOKEN_TTL_SECS` | `2592000` | lifetime of refresh tokens (30 days) |
//! | `BCRYPT_COST` | `12` | bcrypt work factor, 4..=31 |
//! | `PURCHASE_RATE_PER_SEC` | `2` | purchase attempts per second per user (per process) |
//! | `PURCHASE_BURST` | `5` | purchase attempts a user may fire at once |
//! | `AUTH_RATE_PER_SEC` | `5` | login/register/refresh attempts per second per client IP (per process) |
//! | `AUTH_BURST` | `20` | login/register/refresh attempts an IP may fire at once |
//! | `PURCHASE_MODE` | `combined` | `combined`: one locked transaction serves every buyer queued for a sale; `per_purchase`: one transaction per buyer |
//! | `PURCHASE_MAX_BATCH` | `512` | most buyers one combined transaction serves |
//! | `PURCHASE_QUEUE_LIMIT` | `20000` | buyers that may wait for one sale (per process) before `busy` |
//! | `DB_MAX_CONNECTIONS` | `20` | size of the connection pool |
//! | `DB_ACQUIRE_TIMEOUT_MS` | `3000` | wait for a pooled connection before answering `busy` |
//! | `REQUIRE_VERIFIED_EMAIL` | `false` | `true`: purchases need a verified email address |
//! | `PUBLIC_URL` | `http://HOST:PORT` | the address links in emails point to |
//! | `SMTP_URL` | unset | send email by SMTP: `smtps://user:pass@host` (TLS), `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtp://host:25` (plain, local relays) |
//! | `EMAIL_DIR` | unset | without `SMTP_URL`: write each email as an `.eml` file here (embedded mode: `<data dir>/mail`) |
//! | `EMAIL_FROM` | `flashsale <no-reply@flashsale.localhost>` | sender address |
//! | `EMAIL_RATE_PER_SEC` | `100` | emails sent per second, across the process's workers |
//! | `EMAIL_BURST` | `10` | emails that may leave at once within that rate |
//! | `EMAIL_WORKERS` | `8` | concurrent senders per process (each waits on its SMTP round trips) |
//! | `EMAIL_MAX_ATTEMPTS` | `8` | attempts before an email is parked as dead |
//! | `EMAIL_RETRY_BASE_MS` | `2000` | first retry delay; doubles with each attempt |
//! | `EMAIL_RETRY_MAX_MS` | `3600000` | longest retry delay |
//! | `EMAIL_CLAIM_TIMEOUT_SECS` | `300` | a claimed email not marked sent by then is claimed again |
//! | `EMAIL_POLL_MS` | `1000` | how often idle workers look for due emails |
//! | `JOBS_ENABLED` | `true` | run the scheduled email jobs in this process |
//! | `JOB_DIGEST_AT` | `06:00` | UTC time of the sellers' daily digest |
//! | `JOB_REPORT_AT` | `07:00` | UTC time of the monthly revenue report (on the 1st) |
//! | `JOB_ANNOUNCE_AT` | `09:00` | UTC time of the new-products announcement |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//! | `RUST_LOG` | `info` | log filter |

use std::env;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;

/// Where the database comes from.
#[derive(Clone, Debug)]
pub enum DatabaseSource {
    /// A server the operator runs.
    Url(String),
    /// The private cluster started by the process itself, in this directory.
    Embedded { data_dir: PathBuf },
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
    pub jwt_secret: Option<String>,
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
    pub auth_rate: Rate,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub purchase: PurchaseSettings,
    pub email: EmailSettings,
}

/// Where emails go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailTransport {
    /// Nowhere yet: emails wait in the outbox (no workers run).
    Off,
    /// An SMTP server, by lettre's connection URL.
    Smtp(String),
    /// One `.eml` file per email in this directory.
    Files(PathBuf),
}

/// UTC times of day of the scheduled jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobTimes {
    pub digest_at: NaiveTime,
    pub report_at: NaiveTime,
    pub announce_at: NaiveTime,
}

impl Default for JobTimes {
    fn default() -> Self {
        let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        JobTimes {
            digest_at: at(6),
            report_at: at(7),
            announce_at: at(9),
        }
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
    /// Emails are queued but neither sent nor scheduled: the embedded and
    /// configured modes turn those on (see [`Config::from_lookup`]).
    fn default() -> Self {
        EmailSettings {
            transport: MailTransport::Off,
            from: "flashsale <no-reply@flashsale.localhost>".into(),
            public_url: None,
            rate: Rate::new(100, 10),
            workers: 8,
            max_attempts: 8,
            retry_base: Duration::from_millis(2000),
            retry_max: Duration::from_secs(3600),
            claim_timeout: Duration::from_secs(300),
            poll: Duration::from_millis(1000),
            jobs: None,
            verify_token_ttl: Duration::from_secs(7 * 24 * 3600),
            reset_token_ttl: Duration::from_secs(3600),
        }
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
    fn default() -> Self {
        PurchaseSettings {
            mode: PurchaseMode::Combined,
            max_batch: 512,
            queue_limit: 20_000,
            require_verified_email: false,
        }
    }
}

/// A token-bucket rate: `per_second` refill and `burst` capacity.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            bcrypt_cost: 12,
            purchase_rate: Rate::new(2, 5),
            auth_rate: Rate::new(5, 20),
            db_max_connections: 20,
            db_acquire_timeout: Duration::from_millis(3000),
            purchase: PurchaseSettings::default(),
            email: EmailSettings::default(),
        }
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
        let mut errors = Vec::new();
        let defaults = AppSettings::default();

        let database = match get("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    errors.push("DATABASE_URL must start with postgres:// or postgresql://".into());
                }
                DatabaseSource::Url(url)
            }
            None => DatabaseSource::Embedded {
                data_dir: absolute(PathBuf::from(
                    get("FLASHSALE_DATA_DIR").unwrap_or_else(|| "flashsale-data".into()),
                )),
            },
        };

        let jwt_secret = get("JWT_SECRET");
        match (&database, &jwt_secret) {
            (DatabaseSource::Url(_), None) => errors.push(format!(
                "JWT_SECRET is required with DATABASE_URL (at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`)"
            )),
            (_, Some(s)) if s.len() < MIN_JWT_SECRET_BYTES => errors.push(format!(
                "JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (it has {})",
                s.len()
            )),
            _ => {}
        }

        let port = num(
            &get,
            &mut errors,
            "PORT",
            8080u16,
            |_| true,
            "a port number",
        );
        let workers = get("WORKERS").map(|_| {
            num(
                &get,
                &mut errors,
                "WORKERS",
                1usize,
                |w| *w >= 1 && *w <= 512,
                "a worker count (1..=512)",
            )
        });
        let access = num(
            &get,
            &mut errors,
            "ACCESS_TOKEN_TTL_SECS",
            900u64,
            |v| *v >= 10,
            "a number of seconds >= 10",
        );
        let refresh = num(
            &get,
            &mut errors,
            "REFRESH_TOKEN_TTL_SECS",
            defaults.refresh_token_ttl.as_secs(),
            |v| *v >= 60,
            "a number of seconds >= 60",
        );
        let bcrypt_cost = num(
            &get,
            &mut errors,
            "BCRYPT_COST",
            12u32,
            |c| (MIN_BCRYPT_COST..=31).contains(c),
            "a bcrypt cost between 4 and 31",
        );
        let positive = |v: &u32| *v >= 1;
        let p_rate = num(
            &get,
            &mut errors,
            "PURCHASE_RATE_PER_SEC",
            2u32,
            positive,
            "a positive integer",
        );
        let p_burst = num(
            &get,
            &mut errors,
            "PURCHASE_BURST",
            5u32,
            positive,
            "a positive integer",
        );
        let a_rate = num(
            &get,
            &mut errors,
            "AUTH_RATE_PER_SEC",
            5u32,
            positive,
            "a positive integer",
        );
        let a_burst = num(
            &get,
            &mut errors,
            "AUTH_BURST",
            20u32,
            positive,
            "a positive integer",
        );
        let max_conn = num(
            &get,
            &mut errors,
            "DB_MAX_CONNECTIONS",
            20u32,
            |v| (1..=1000).contains(v),
            "a connection count (1..=1000)",
        );
        let acquire_ms = num(
            &get,
            &mut errors,
            "DB_ACQUIRE_TIMEOUT_MS",
            3000u64,
            |v| *v >= 1,
            "a positive number of milliseconds",
        );
        let mode = match get("PURCHASE_MODE").as_deref() {
            None | Some("combined") => PurchaseMode::Combined,
            Some("per_purchase") => PurchaseMode::PerPurchase,
            Some(other) => {
                errors.push(format!(
                    "PURCHASE_MODE={other:?} is not `combined` or `per_purchase`"
                ));
                PurchaseMode::Combined
            }
        };
        let max_batch = num(
            &get,
            &mut errors,
            "PURCHASE_MAX_BATCH",
            512usize,
            |v| (1..=10_000).contains(v),
            "a batch size (1..=10000)",
        );
        let queue_limit = num(
            &get,
            &mut errors,
            "PURCHASE_QUEUE_LIMIT",
            20_000usize,
            |v| (1..=10_000_000).contains(v),
            "a queue length (1..=10000000)",
        );
        let require_verified_email = flag(&get, &mut errors, "REQUIRE_VERIFIED_EMAIL", false);
        let email = email_settings(&get, &mut errors, &database);
        let log_json = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                errors.push(format!("LOG_FORMAT={other:?} is not `text` or `json`"));
                false
            }
        };

        if !errors.is_empty() {
            return Err(format!("invalid configuration: {}", errors.join("; ")));
        }
        Ok(Config {
            database,
            pg_bin_dir: get("PG_BIN_DIR").map(PathBuf::from),
            host: get("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port,
            workers,
            jwt_secret,
            log_json,
            app: AppSettings {
                access_token_ttl: Duration::from_secs(access),
                refresh_token_ttl: Duration::from_secs(refresh),
                bcrypt_cost,
                purchase_rate: Rate::new(p_rate, p_burst),
                auth_rate: Rate::new(a_rate, a_burst),
                db_max_connections: max_conn,
                db_acquire_timeout: Duration::from_millis(acquire_ms),
                purchase: PurchaseSettings {
                    mode,
                    max_batch,
                    queue_limit,
                    require_verified_email,
                },
                email,
            },
        })
    }
}

/// The value of `key` parsed as a `T` that satisfies `ok`; otherwise the
/// problem (`is not {expect}`) is added to `errors` and `default` returned.
fn num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
    key: &str,
    default: T,
    ok: impl Fn(&T) -> bool,
    expect: &str,
) -> T {
    match get(key) {
        None => default,
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if ok(&v) => v,
            _ => {
                errors.push(format!("{key}={raw:?} is not {expect}"));
                default
            }
        },
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`).
fn flag(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
    key: &str,
    default: bool,
) -> bool {
    match get(key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => default,
        Some("true" | "1" | "yes") => true,
        Some("false" | "0" | "no") => false,
        Some(other) => {
            errors.push(format!("{key}={other:?} is not `true` or `false`"));
            default
        }
    }
}

fn email_settings(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
    database: &DatabaseSource,
) -> EmailSettings {
    let d = EmailSettings::default();
    let mut number = |key: &str, default: u64, min: u64, max: u64| -> u64 {
        let expect = format!("a number in {min}..={max}");
        num(
            get,
            errors,
            key,
            default,
            |v| (min..=max).contains(v),
            &expect,
        )
    };
    let rate = number("EMAIL_RATE_PER_SEC", 100, 1, 100_000) as u32;
    let burst = number("EMAIL_BURST", 10, 1, 100_000) as u32;
    let workers = number("EMAIL_WORKERS", 8, 1, 256) as usize;
    let max_attempts = number("EMAIL_MAX_ATTEMPTS", 8, 1, 1000) as i32;
    let retry_base = number("EMAIL_RETRY_BASE_MS", 2000, 1, 86_400_000);
    let retry_max = number("EMAIL_RETRY_MAX_MS", 3_600_000, 1, 604_800_000);
    let claim = number("EMAIL_CLAIM_TIMEOUT_SECS", 300, 1, 86_400);
    let poll = number("EMAIL_POLL_MS", 1000, 10, 600_000);
    let verify_ttl = number("VERIFY_TOKEN_TTL_SECS", 7 * 24 * 3600, 60, 365 * 24 * 3600);
    let reset_ttl = number("RESET_TOKEN_TTL_SECS", 3600, 60, 7 * 24 * 3600);

    let transport = match (get("SMTP_URL"), get("EMAIL_DIR"), database) {
        (Some(url), _, _) => {
            use lettre::{AsyncSmtpTransport, Tokio1Executor};
            if let Err(e) = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url) {
                // The error names the scheme, never the credentials.
                errors.push(format!("SMTP_URL is not a usable SMTP URL: {e}"));
            }
            MailTransport::Smtp(url)
        }
        (None, Some(dir), _) => MailTransport::Files(absolute(PathBuf::from(dir))),
        (None, None, DatabaseSource::Embedded { data_dir }) => {
            MailTransport::Files(data_dir.join("mail"))
        }
        (None, None, DatabaseSource::Url(_)) => MailTransport::Off,
    };
    let from = get("EMAIL_FROM").unwrap_or(d.from);
    if let Err(e) = from.parse::<lettre::message::Mailbox>() {
        errors.push(format!("EMAIL_FROM={from:?} is not an email address: {e}"));
    }
    let public_url = get("PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string());
    if let Some(u) = &public_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errors.push(format!(
                "PUBLIC_URL={u:?} must start with http:// or https://"
            ));
        }
    }
    let mut time = |key: &str, default: NaiveTime| match get(key) {
        None => default,
        Some(raw) => NaiveTime::parse_from_str(raw.trim(), "%H:%M").unwrap_or_else(|_| {
            errors.push(format!("{key}={raw:?} is not a time of day like 06:00"));
            default
        }),
    };
    let times = JobTimes::default();
    let times = JobTimes {
        digest_at: time("JOB_DIGEST_AT", times.digest_at),
        report_at: time("JOB_REPORT_AT", times.report_at),
        announce_at: time("JOB_ANNOUNCE_AT", times.announce_at),
    };
    let jobs = flag(get, errors, "JOBS_ENABLED", true).then_some(times);
    EmailSettings {
        transport,
        from,
        public_url,
        rate: Rate::new(rate, burst),
        workers,
        max_attempts,
        retry_base: Duration::from_millis(retry_base),
        retry_max: Duration::from_millis(retry_max),
        claim_timeout: Duration::from_secs(claim),
        poll: Duration::from_millis(poll),
        jobs,
        verify_token_ttl: Duration::from_secs(verify_ttl),
        reset_token_ttl: Duration::from_secs(reset_ttl),
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn embedded_mode_needs_no_configuration() {
        let c = cfg(&[]).expect("defaults are valid");
        assert!(matches!(c.database, DatabaseSource::Embedded { .. }));
        assert_eq!(c.port, 8080);
        assert_eq!(c.app.bcrypt_cost, 12);
    }

    #[test]
    fn a_real_database_requires_a_strong_jwt_secret() {
        let err = cfg(&[("DATABASE_URL", "postgres://x@localhost/db")]).unwrap_err();
        assert!(err.contains("JWT_SECRET is required"), "{err}");
        let err = cfg(&[
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_SECRET", "short"),
        ])
        .unwrap_err();
        assert!(err.contains("at least 32 bytes"), "{err}");
        let ok = cfg(&[
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = cfg(&[
            ("PORT", "http"),
            ("BCRYPT_COST", "3"),
            ("LOG_FORMAT", "xml"),
        ])
        .unwrap_err();
        assert!(err.contains("PORT"), "{err}");
        assert!(err.contains("BCRYPT_COST"), "{err}");
        assert!(err.contains("LOG_FORMAT"), "{err}");
    }

    #[test]
    fn email_goes_to_files_when_embedded_and_waits_without_a_transport() {
        let c = cfg(&[("FLASHSALE_DATA_DIR", "/srv/fs")]).expect("valid");
        assert_eq!(
            c.app.email.transport,
            MailTransport::Files(PathBuf::from("/srv/fs/mail"))
        );
        assert!(c.app.email.jobs.is_some());
        let c = cfg(&[
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("valid");
        assert_eq!(c.app.email.transport, MailTransport::Off);
    }

    #[test]
    fn email_settings_are_checked() {
        let c = cfg(&[
            ("SMTP_URL", "smtps://me:secret@mail.example.com"),
            ("JOB_DIGEST_AT", "05:30"),
            ("JOBS_ENABLED", "false"),
        ])
        .expect("valid");
        assert!(matches!(c.app.email.transport, MailTransport::Smtp(_)));
        assert!(c.app.email.jobs.is_none());
        let err = cfg(&[
            ("SMTP_URL", "http://mail.example.com"),
            ("JOB_ANNOUNCE_AT", "9am"),
            ("EMAIL_RATE_PER_SEC", "0"),
            ("EMAIL_FROM", "nobody"),
            ("REQUIRE_VERIFIED_EMAIL", "maybe"),
        ])
        .unwrap_err();
        for key in [
            "SMTP_URL",
            "JOB_ANNOUNCE_AT",
            "EMAIL_RATE_PER_SEC",
            "EMAIL_FROM",
            "REQUIRE_VERIFIED_EMAIL",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
        assert!(!err.contains("secret"));
    }
}
