//! Sending the outbox: claim, render, send, settle.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::task::JoinHandle;

use super::{context, Kind, Rendered, Templates};
use crate::config::{EmailSettings, ExposeSecret, MailTransport};
use crate::db::Db;

/// Rows one sender claims at a time.
const CLAIM_BATCH: i64 = 8;

/// The outbox kind of a payment provider's webhook: these rows are
/// delivered by [`crate::payment::webhooks`], every other one is an email
/// (the claim's SQL spells it out, to match its partial index).
pub const WEBHOOK_KIND: &str = "payment_webhook";

/// A row claimed for sending.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub kind: String,
    pub user_id: i64,
    pub order_id: Option<i64>,
    pub payload: Option<String>,
    pub attempts: i32,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Why a send failed, and whether trying again may help.
#[derive(Debug)]
pub struct SendError {
    message: String,
    permanent: bool,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: true,
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: false,
        }
    }
}

impl From<sqlx::Error> for SendError {
    fn from(e: sqlx::Error) -> Self {
        SendError::transient(format!("database: {e}"))
    }
}

/// The process's senders: one transport, one rate limit, shared by every
/// worker.
pub struct Mailer {
    pool: Db,
    settings: EmailSettings,
    base_url: String,
    from: Mailbox,
    transport: Transport,
    limiter: DefaultDirectRateLimiter,
    templates: Templates,
}

impl Mailer {
    /// A mailer for `settings`, or `None` when email is off (rows wait).
    pub fn new(
        pool: Db,
        settings: EmailSettings,
        base_url: String,
    ) -> anyhow::Result<Option<Arc<Mailer>>> {
        let transport = match &settings.transport {
            MailTransport::Off => return Ok(None),
            MailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?
                    .timeout(Some(Duration::from_secs(30)))
                    .build(),
            ),
            MailTransport::Files(dir) => {
                // Emails carry live links (password resets): owner only.
                std::fs::create_dir_all(dir)
                    .and_then(|()| {
                        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    })
                    .map_err(|e| {
                        anyhow::anyhow!("cannot create the email directory {}: {e}", dir.display())
                    })?;
                Transport::Files(AsyncFileTransport::new(dir), dir.clone())
            }
        };
        let from = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("EMAIL_FROM: {e}"))?;
        let quota = Quota::per_second(settings.rate.per_second).allow_burst(settings.rate.burst);
        Ok(Some(Arc::new(Mailer {
            pool,
            limiter: RateLimiter::direct(quota),
            templates: Templates::new()?,
            settings,
            base_url,
            from,
            transport,
        })))
    }

    /// Starts the senders; they run until aborted.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        match &self.transport {
            Transport::Smtp(_) => {
                tracing::info!(workers = self.settings.workers, "sending email by SMTP")
            }
            Transport::Files(_, dir) => {
                tracing::info!(dir = %dir.display(), "writing each email as an .eml file")
            }
        }
        (0..self.settings.workers)
            .map(|_| tokio::spawn(Arc::clone(self).work()))
            .collect()
    }

    async fn work(self: Arc<Self>) {
        loop {
            match claim(&self.pool, &self.settings, false).await {
                Ok(rows) if !rows.is_empty() => {
                    for row in rows {
                        self.limiter.until_ready().await;
                        let result = self.deliver(&row).await;
                        if let Err(e) = settle(&self.pool, &self.settings, &row, result).await {
                            // The row stays claimed until its lease ends, then
                            // is sent again: at-least-once.
                            tracing::warn!(id = row.id, error = %e, "cannot record an email's outcome");
                        }
                    }
                }
                Ok(_) => tokio::time::sleep(self.settings.poll).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim emails");
                    tokio::time::sleep(self.settings.poll).await;
                }
            }
        }
    }

    async fn deliver(&self, row: &Claimed) -> Result<(), SendError> {
        let kind = Kind::parse(&row.kind)
            .ok_or_else(|| SendError::permanent(format!("unknown kind {}", row.kind)))?;
        let (to, ctx) = context::load(&self.pool, &self.base_url, kind, row).await?;
        let rendered = self
            .templates
            .render(kind, &ctx)
            .map_err(|e| SendError::permanent(format!("template: {e:#}")))?;
        let message = self.message(row.id, to, rendered)?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(|e| {
                let text = format!("smtp: {e}");
                if e.is_permanent() {
                    SendError::permanent(text)
                } else {
                    SendError::transient(text)
                }
            }),
            Transport::Files(files, dir) => {
                let id = files
                    .send(message)
                    .await
                    .map_err(|e| SendError::transient(format!("file: {e}")))?;
                let path = dir.join(format!("{id}.eml"));
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| SendError::transient(format!("file: {e}")))?;
                tracing::info!(path = %path.display(), kind = kind.as_str(), "email written");
                Ok(())
            }
        }
    }

    fn message(&self, id: i64, to: Mailbox, r: Rendered) -> Result<Message, SendError> {
        let domain = self
            .from
            .email
            .domain()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            // Stable per outbox row: a copy sent twice (at-least-once) has the
            // same id, so mail clients can tell it is one message.
            .message_id(Some(format!("<outbox-{id}@{domain}>")))
            .multipart(MultiPart::alternative_plain_html(r.text, r.html))
            .map_err(|e| SendError::permanent(format!("message: {e}")))
    }
}

/// Claims up to a batch of due rows, emails or (`webhooks`) the payment
/// provider's webhooks: each claim counts an attempt and pushes the row's
/// next attempt past the lease, so no other sender takes it meanwhile. Each
/// kind of sender searches its own partial index.
pub async fn claim(
    pool: &Db,
    settings: &EmailSettings,
    webhooks: bool,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let which = if webhooks {
        "kind = 'payment_webhook'"
    } else {
        "kind <> 'payment_webhook'"
    };
    sqlx::query_as(&format!(
        "update outbox o
            set attempts = o.attempts + 1,
                next_attempt_at = now() + make_interval(secs => $2)
           from (select id from outbox
                  where status = 'pending' and next_attempt_at <= now() and {which}
                  order by next_attempt_at, id
                  limit $1
                  for update skip locked) due
          where o.id = due.id
      returning o.id, o.kind, o.user_id, o.order_id, o.payload::text as payload, o.attempts"
    ))
    .bind(CLAIM_BATCH)
    .bind(settings.claim_timeout.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Records a send's outcome: sent, retried later (with backoff), or dead.
pub async fn settle(
    pool: &Db,
    settings: &EmailSettings,
    row: &Claimed,
    result: Result<(), SendError>,
) -> sqlx::Result<()> {
    match result {
        Ok(()) => {
            // A sent token email keeps no copy of its token.
            sqlx::query(
                "update outbox set status = 'sent', sent_at = now(), last_error = null,
                        payload = case when kind in ('verify_email', 'password_reset')
                                       then null else payload end
                  where id = $1",
            )
            .bind(row.id)
            .execute(pool)
            .await?;
        }
        Err(e) if e.permanent || row.attempts >= settings.max_attempts => {
            tracing::warn!(id = row.id, kind = %row.kind, attempts = row.attempts, error = %e.message, "outbox row parked as dead");
            sqlx::query("update outbox set status = 'dead', last_error = $2 where id = $1")
                .bind(row.id)
                .bind(&e.message)
                .execute(pool)
                .await?;
        }
        Err(e) => {
            let wait = backoff(settings, row.attempts);
            tracing::info!(id = row.id, attempts = row.attempts, retry_in = ?wait, error = %e.message, "outbox row will be retried");
            sqlx::query(
                "update outbox set next_attempt_at = now() + make_interval(secs => $2),
                        last_error = $3
                  where id = $1",
            )
            .bind(row.id)
            .bind(wait.as_secs_f64())
            .bind(&e.message)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// The wait after the `attempts`-th failure: base, 2×base, 4×base, ... up to
/// the maximum.
pub fn backoff(settings: &EmailSettings, attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    settings
        .retry_base
        .saturating_mul(1u32 << doublings)
        .min(settings.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = EmailSettings {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            ..EmailSettings::default()
        };
        assert_eq!(backoff(&s, 1), Duration::from_secs(2));
        assert_eq!(backoff(&s, 2), Duration::from_secs(4));
        assert_eq!(backoff(&s, 5), Duration::from_secs(32));
        assert_eq!(backoff(&s, 6), Duration::from_secs(60));
        assert_eq!(backoff(&s, 1000), Duration::from_secs(60));
    }
}
