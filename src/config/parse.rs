//! Reading the environment through the declarations of [`super::vars`].

use std::env;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use secrecy::{ExposeSecret, SecretString};

use super::vars::{self, Allowed, Unset, Var};
use super::{
    AppSettings, Config, DatabaseSource, DatabaseUrls, EmailSettings, JobTimes, MailTransport,
    PaymentProvider, PurchaseMode, PurchaseSettings, Rate, MIN_JWT_SECRET_BYTES,
    MIN_WEBHOOK_SECRET_BYTES,
};

/// Values read through `get`, and every problem met on the way.
pub(super) struct Env<G> {
    get: G,
    errors: Vec<String>,
}

/// Nothing set: every variable at its declared default.
pub(super) fn defaults() -> Env<fn(&str) -> Option<String>> {
    Env::new(|_| None)
}

impl<G: Fn(&str) -> Option<String>> Env<G> {
    pub(super) fn new(get: G) -> Self {
        Env {
            get,
            errors: Vec::new(),
        }
    }

    /// The value set for `name`, else its declared default; `None` when it is
    /// unset and declared without a value.
    fn raw(&mut self, name: &str) -> Option<(&'static Var, String)> {
        let Some(var) = vars::find(name) else {
            self.errors
                .push(format!("{name} is read but not declared in config::vars"));
            return None;
        };
        let raw = (self.get)(name).or_else(|| match var.unset {
            Unset::Value(v) => Some(v.to_string()),
            Unset::Means(_) => None,
        })?;
        Some((var, raw))
    }

    /// Records that `raw` is not what `var` accepts (`detail` says why).
    fn reject(&mut self, var: &Var, raw: &str, detail: Option<String>) {
        let shown = if var.secret {
            var.name.to_string()
        } else {
            format!("{}={raw:?}", var.name)
        };
        let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
        self.errors
            .push(format!("{shown} is not {}{detail}", var.allowed.describe()));
    }

    fn misdeclared(&mut self, var: &Var, as_what: &str) {
        self.errors.push(format!(
            "{} is read as {as_what} but declared as {:?}",
            var.name, var.allowed
        ));
    }

    /// A whole number within its declared range.
    pub(super) fn int<T: TryFrom<u64> + Default>(&mut self, name: &str) -> T {
        self.opt_int(name).unwrap_or_default()
    }

    /// [`Env::int`] of a variable without a declared default.
    pub(super) fn opt_int<T: TryFrom<u64>>(&mut self, name: &str) -> Option<T> {
        let (var, raw) = self.raw(name)?;
        let Allowed::Int { min, max } = var.allowed else {
            self.misdeclared(var, "a number");
            return None;
        };
        match raw.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => match T::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.reject(var, &raw, Some("too large".into()));
                    None
                }
            },
            _ => {
                self.reject(var, &raw, None);
                None
            }
        }
    }

    pub(super) fn flag(&mut self, name: &str) -> bool {
        let Some((var, raw)) = self.raw(name) else {
            return false;
        };
        if !matches!(var.allowed, Allowed::Flag) {
            self.misdeclared(var, "a flag");
        }
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                self.reject(var, other, None);
                false
            }
        }
    }

    /// One of the declared words (the first one when the value is none of
    /// them).
    pub(super) fn choice(&mut self, name: &str) -> &'static str {
        let Some((var, raw)) = self.raw(name) else {
            return "";
        };
        let Allowed::OneOf(words) = var.allowed else {
            self.misdeclared(var, "a choice");
            return "";
        };
        match words.iter().find(|w| **w == raw) {
            Some(w) => w,
            None => {
                self.reject(var, &raw, None);
                words.first().copied().unwrap_or_default()
            }
        }
    }

    pub(super) fn time(&mut self, name: &str) -> NaiveTime {
        let Some((var, raw)) = self.raw(name) else {
            return NaiveTime::MIN;
        };
        if !matches!(var.allowed, Allowed::TimeOfDay) {
            self.misdeclared(var, "a time of day");
        }
        NaiveTime::parse_from_str(raw.trim(), "%H:%M").unwrap_or_else(|_| {
            self.reject(var, &raw, None);
            NaiveTime::MIN
        })
    }

    /// Text, checked against a declared prefix or length; `None` when unset
    /// without a declared default.
    pub(super) fn text(&mut self, name: &str) -> Option<String> {
        let (var, raw) = self.raw(name)?;
        match var.allowed {
            Allowed::Prefix(prefixes) if !prefixes.iter().any(|p| raw.starts_with(p)) => {
                self.reject(var, &raw, None)
            }
            Allowed::MinBytes(n) if raw.len() < n => {
                self.reject(var, &raw, Some(format!("it has {}", raw.len())))
            }
            Allowed::Prefix(_) | Allowed::MinBytes(_) | Allowed::Text(_) => {}
            _ => self.misdeclared(var, "text"),
        }
        Some(raw)
    }

    /// Records that the value of `name` failed a check of the code that
    /// reads it.
    fn invalid(&mut self, name: &str, raw: &str, detail: impl ToString) {
        if let Some(var) = vars::find(name) {
            self.reject(var, raw, Some(detail.to_string()));
        }
    }

    /// The whole configuration, or every problem in one message.
    pub(super) fn config(mut self) -> Result<Config, String> {
        let listen = self.text("DATABASE_LISTEN_URL").map(SecretString::from);
        let pooled = self.choice("DATABASE_POOLER") == "transaction";
        let read = self.text("DATABASE_READ_URL").map(SecretString::from);
        let read_max_lag = Duration::from_millis(self.int("DATABASE_READ_MAX_LAG_MS"));
        let database = match self.text("DATABASE_URL") {
            Some(url) => DatabaseSource::Url(DatabaseUrls {
                primary: url.into(),
                listen,
                pooled,
                read,
                read_max_lag,
            }),
            None if listen.is_some() || pooled || read.is_some() => {
                self.errors.push(
                    "DATABASE_LISTEN_URL, DATABASE_POOLER and DATABASE_READ_URL describe the operator's PostgreSQL: set DATABASE_URL too".into(),
                );
                DatabaseSource::Embedded {
                    data_dir: PathBuf::new(),
                }
            }
            None => DatabaseSource::Embedded {
                data_dir: absolute(PathBuf::from(
                    self.text("FLASHSALE_DATA_DIR").unwrap_or_default(),
                )),
            },
        };
        let jwt_secret = self.text("JWT_SECRET").map(SecretString::from);
        if matches!(database, DatabaseSource::Url(_)) && jwt_secret.is_none() {
            self.errors.push(format!(
                "JWT_SECRET is required with DATABASE_URL (at least {MIN_JWT_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`)"
            ));
        }
        let payment_webhook_secret = self.text("PAYMENT_WEBHOOK_SECRET").map(SecretString::from);
        if matches!(database, DatabaseSource::Url(_)) && payment_webhook_secret.is_none() {
            self.errors.push(format!(
                "PAYMENT_WEBHOOK_SECRET is required with DATABASE_URL (at least {MIN_WEBHOOK_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`)"
            ));
        }
        let pg_bin_dir = self.text("PG_BIN_DIR").map(PathBuf::from);
        let host = self.text("HOST").unwrap_or_default();
        let port = self.int("PORT");
        let workers = self.opt_int("WORKERS");
        let mut app = self.app();
        app.email.transport = self.transport(&database);
        let times = self.job_times();
        app.email.jobs = self.flag("JOBS_ENABLED").then_some(times);
        let log_json = self.choice("LOG_FORMAT") == "json";

        if !self.errors.is_empty() {
            return Err(format!("invalid configuration: {}", self.errors.join("; ")));
        }
        Ok(Config {
            database,
            pg_bin_dir,
            host,
            port,
            workers,
            jwt_secret,
            payment_webhook_secret,
            log_json,
            app,
        })
    }

    pub(super) fn app(&mut self) -> AppSettings {
        AppSettings {
            access_token_ttl: Duration::from_secs(self.int("ACCESS_TOKEN_TTL_SECS")),
            refresh_token_ttl: Duration::from_secs(self.int("REFRESH_TOKEN_TTL_SECS")),
            bcrypt_cost: self.int("BCRYPT_COST"),
            purchase_rate: Rate::new(
                self.int("PURCHASE_RATE_PER_SEC"),
                self.int("PURCHASE_BURST"),
            ),
            purchase_ip_rate: self
                .opt_int::<u32>("PURCHASE_IP_RATE_PER_SEC")
                .map(|n| Rate::new(n, n.saturating_mul(10))),
            auth_rate: Rate::new(self.int("AUTH_RATE_PER_SEC"), self.int("AUTH_BURST")),
            db_max_connections: self.int("DB_MAX_CONNECTIONS"),
            db_acquire_timeout: Duration::from_millis(self.int("DB_ACQUIRE_TIMEOUT_MS")),
            purchase: self.purchase(),
            email: self.email(),
            metrics_token: self.text("METRICS_TOKEN").map(SecretString::from),
            payment_provider: {
                // `test` is the one provider so far; reading the choice
                // still refuses any other word.
                self.choice("PAYMENT_PROVIDER");
                PaymentProvider::Test
            },
            cart_hold_secs: self.int("CART_HOLD_SECS"),
        }
    }

    pub(super) fn purchase(&mut self) -> PurchaseSettings {
        PurchaseSettings {
            mode: match self.choice("PURCHASE_MODE") {
                "per_purchase" => PurchaseMode::PerPurchase,
                _ => PurchaseMode::Combined,
            },
            max_batch: self.int("PURCHASE_MAX_BATCH"),
            queue_limit: self.int("PURCHASE_QUEUE_LIMIT"),
            require_verified_email: self.flag("REQUIRE_VERIFIED_EMAIL"),
        }
    }

    /// The email settings but the transport and the jobs, which depend on
    /// the mode (see [`Env::config`]): emails wait and no job runs.
    pub(super) fn email(&mut self) -> EmailSettings {
        let from = self.text("EMAIL_FROM").unwrap_or_default();
        if let Err(e) = from.parse::<lettre::message::Mailbox>() {
            self.invalid("EMAIL_FROM", &from, e);
        }
        let public_url = self
            .text("PUBLIC_URL")
            .map(|u| u.trim_end_matches('/').to_string());
        EmailSettings {
            transport: MailTransport::Off,
            from,
            public_url,
            rate: Rate::new(self.int("EMAIL_RATE_PER_SEC"), self.int("EMAIL_BURST")),
            workers: self.int("EMAIL_WORKERS"),
            max_attempts: self.int("EMAIL_MAX_ATTEMPTS"),
            retry_base: Duration::from_millis(self.int("EMAIL_RETRY_BASE_MS")),
            retry_max: Duration::from_millis(self.int("EMAIL_RETRY_MAX_MS")),
            claim_timeout: Duration::from_secs(self.int("EMAIL_CLAIM_TIMEOUT_SECS")),
            poll: Duration::from_millis(self.int("EMAIL_POLL_MS")),
            jobs: None,
            verify_token_ttl: Duration::from_secs(self.int("VERIFY_TOKEN_TTL_SECS")),
            reset_token_ttl: Duration::from_secs(self.int("RESET_TOKEN_TTL_SECS")),
        }
    }

    pub(super) fn job_times(&mut self) -> JobTimes {
        JobTimes {
            digest_at: self.time("JOB_DIGEST_AT"),
            report_at: self.time("JOB_REPORT_AT"),
            announce_at: self.time("JOB_ANNOUNCE_AT"),
        }
    }

    /// SMTP if configured, else files: in `EMAIL_DIR`, or beside the embedded
    /// cluster; with neither, emails wait in the outbox.
    fn transport(&mut self, database: &DatabaseSource) -> MailTransport {
        let smtp = self.text("SMTP_URL").map(SecretString::from);
        let dir = self.text("EMAIL_DIR");
        match (smtp, dir, database) {
            (Some(url), _, _) => {
                use lettre::{AsyncSmtpTransport, Tokio1Executor};
                if let Err(e) = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                {
                    // The error names the scheme, never the credentials.
                    self.invalid("SMTP_URL", "", e);
                }
                MailTransport::Smtp(url)
            }
            (None, Some(dir), _) => MailTransport::Files(absolute(PathBuf::from(dir))),
            (None, None, DatabaseSource::Embedded { data_dir }) => {
                MailTransport::Files(data_dir.join("mail"))
            }
            (None, None, DatabaseSource::Url(_)) => MailTransport::Off,
        }
    }
}

/// `p` against the working directory (a leading `./` dropped).
fn absolute(p: PathBuf) -> PathBuf {
    let p = p.strip_prefix(".").map(PathBuf::from).unwrap_or(p);
    if p.is_absolute() {
        p
    } else {
        env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}
