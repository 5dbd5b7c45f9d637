//! Sending the outbox: claim, render, send, settle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::{money, Kind, Rendered, Templates};
use crate::config::{EmailSettings, ExposeSecret, MailTransport};

/// Rows one sender claims at a time.
const CLAIM_BATCH: i64 = 8;

/// A row claimed for sending.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: i64,
    kind: String,
    user_id: i64,
    order_id: Option<i64>,
    payload: Option<String>,
    attempts: i32,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Why a send failed, and whether trying again may help.
#[derive(Debug)]
struct SendError {
    message: String,
    permanent: bool,
}

impl SendError {
    fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            permanent: true,
        }
    }
    fn transient(message: impl Into<String>) -> Self {
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
    pool: PgPool,
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
        pool: PgPool,
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
                std::fs::create_dir_all(dir).map_err(|e| {
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
            match self.claim().await {
                Ok(rows) if !rows.is_empty() => {
                    for row in rows {
                        self.limiter.until_ready().await;
                        let result = self.deliver(&row).await;
                        if let Err(e) = self.settle(&row, result).await {
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

    /// Claims up to a batch of due rows: each claim counts an attempt and
    /// pushes the row's next attempt past the lease, so no other sender takes
    /// it meanwhile.
    async fn claim(&self) -> Result<Vec<Claimed>, sqlx::Error> {
        sqlx::query_as(
            "update outbox o
                set attempts = o.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2)
               from (select id from outbox
                      where status = 'pending' and next_attempt_at <= now()
                      order by next_attempt_at, id
                      limit $1
                      for update skip locked) due
              where o.id = due.id
          returning o.id, o.kind, o.user_id, o.order_id, o.payload::text as payload, o.attempts",
        )
        .bind(CLAIM_BATCH)
        .bind(self.settings.claim_timeout.as_secs_f64())
        .fetch_all(&self.pool)
        .await
    }

    async fn deliver(&self, row: &Claimed) -> Result<(), SendError> {
        let kind = Kind::parse(&row.kind)
            .ok_or_else(|| SendError::permanent(format!("unknown kind {}", row.kind)))?;
        let (to, ctx) = self.context(kind, row).await?;
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
                tracing::info!(path = %dir.join(format!("{id}.eml")).display(), kind = kind.as_str(), "email written");
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

    /// The recipient and the template values of a row, read at send time.
    async fn context(&self, kind: Kind, row: &Claimed) -> Result<(Mailbox, Value), SendError> {
        #[derive(sqlx::FromRow)]
        struct Recipient {
            username: String,
            email: String,
            unsubscribe_token: String,
        }
        let user: Option<Recipient> = sqlx::query_as(
            "select username, email, unsubscribe_token::text as unsubscribe_token
               from app_user where id = $1",
        )
        .bind(row.user_id)
        .fetch_optional(&self.pool)
        .await?;
        let user = user.ok_or_else(|| SendError::permanent("the recipient no longer exists"))?;
        let to = Mailbox::new(
            Some(user.username.clone()),
            user.email
                .parse()
                .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?,
        );
        let payload: Value = match &row.payload {
            Some(p) => serde_json::from_str(p)
                .map_err(|e| SendError::permanent(format!("payload: {e}")))?,
            None => Value::Null,
        };
        let mut ctx = match kind {
            Kind::OrderConfirmation => self.order_context(row.order_id).await?,
            Kind::VerifyEmail => self.token_context(&payload, "/api/v1/auth/verify")?,
            Kind::PasswordReset => self.token_context(&payload, "/reset-password")?,
            Kind::SellerDailyDigest | Kind::SellerMonthlyReport => report_context(&payload)?,
            Kind::NewProducts => {
                let mut ctx = products_context(&payload)?;
                ctx["unsubscribe_link"] = json!(format!(
                    "{}/api/v1/unsubscribe?token={}",
                    self.base_url, user.unsubscribe_token
                ));
                ctx
            }
        };
        ctx["username"] = json!(user.username);
        ctx["shop_url"] = json!(self.base_url);
        Ok((to, ctx))
    }

    async fn order_context(&self, order_id: Option<i64>) -> Result<Value, SendError> {
        #[derive(sqlx::FromRow)]
        struct OrderRow {
            number: String,
            quantity: i32,
            unit_price_cents: i64,
            total_cents: i64,
            created_at: DateTime<Utc>,
            product: String,
            currency: String,
        }
        let order: Option<OrderRow> = sqlx::query_as(
            "select o.number, o.quantity, o.unit_price_cents, o.total_cents, o.created_at,
                    p.name as product, p.currency
               from purchase_order o join product p on p.id = o.product_id
              where o.id = $1",
        )
        .bind(order_id.unwrap_or(0))
        .fetch_optional(&self.pool)
        .await?;
        let o = order.ok_or_else(|| SendError::permanent("the order no longer exists"))?;
        Ok(json!({
            "order_number": o.number,
            "product": o.product,
            "quantity": o.quantity,
            "unit_price": money(o.unit_price_cents, &o.currency),
            "total": money(o.total_cents, &o.currency),
            "ordered_at": o.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }))
    }

    fn token_context(&self, payload: &Value, path: &str) -> Result<Value, SendError> {
        #[derive(Deserialize)]
        struct TokenPayload {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let p: TokenPayload = serde_json::from_value(payload.clone())
            .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
        Ok(json!({
            "link": format!("{}{path}?token={}", self.base_url, p.token),
            "expires_at": p.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }))
    }

    /// Records a send's outcome: sent, retried later, or dead.
    async fn settle(&self, row: &Claimed, result: Result<(), SendError>) -> sqlx::Result<()> {
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
                .execute(&self.pool)
                .await?;
            }
            Err(e) if e.permanent || row.attempts >= self.settings.max_attempts => {
                tracing::warn!(id = row.id, kind = %row.kind, attempts = row.attempts, error = %e.message, "email parked as dead");
                sqlx::query("update outbox set status = 'dead', last_error = $2 where id = $1")
                    .bind(row.id)
                    .bind(&e.message)
                    .execute(&self.pool)
                    .await?;
            }
            Err(e) => {
                let wait = backoff(&self.settings, row.attempts);
                tracing::info!(id = row.id, attempts = row.attempts, retry_in = ?wait, error = %e.message, "email will be retried");
                sqlx::query(
                    "update outbox set next_attempt_at = now() + make_interval(secs => $2),
                            last_error = $3
                      where id = $1",
                )
                .bind(row.id)
                .bind(wait.as_secs_f64())
                .bind(&e.message)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
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

#[derive(Deserialize)]
struct ReportLine {
    product: String,
    currency: String,
    #[serde(default)]
    orders: i64,
    units: i64,
    revenue_cents: i64,
}

#[derive(Serialize)]
struct ReportLineOut {
    product: String,
    orders: i64,
    units: i64,
    revenue: String,
}

/// Digest and report payloads: money formatted, totals per currency.
fn report_context(payload: &Value) -> Result<Value, SendError> {
    #[derive(Deserialize)]
    struct Report {
        period: String,
        lines: Vec<ReportLine>,
    }
    let r: Report = serde_json::from_value(payload.clone())
        .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for l in &r.lines {
        *totals.entry(l.currency.clone()).or_default() += l.revenue_cents;
    }
    let lines: Vec<ReportLineOut> = r
        .lines
        .into_iter()
        .map(|l| ReportLineOut {
            revenue: money(l.revenue_cents, &l.currency),
            product: l.product,
            orders: l.orders,
            units: l.units,
        })
        .collect();
    let totals: Vec<String> = totals.iter().map(|(c, v)| money(*v, c)).collect();
    Ok(json!({ "period": r.period, "lines": lines, "totals": totals }))
}

fn products_context(payload: &Value) -> Result<Value, SendError> {
    #[derive(Deserialize)]
    struct Product {
        name: String,
        description: String,
        price_cents: i64,
        currency: String,
        seller: String,
    }
    #[derive(Deserialize)]
    struct Announcement {
        products: Vec<Product>,
    }
    let a: Announcement = serde_json::from_value(payload.clone())
        .map_err(|e| SendError::permanent(format!("payload: {e}")))?;
    let products: Vec<Value> = a
        .products
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "description": p.description,
                "price": money(p.price_cents, &p.currency),
                "seller": p.seller,
            })
        })
        .collect();
    Ok(json!({ "products": products }))
}

/// One outbox row as admins see it.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: String,
    pub user_id: i64,
    /// The recipient's current address.
    pub to: Option<String>,
    pub order_id: Option<i64>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Counts by status and the newest rows of one status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutboxView {
    pub pending: i64,
    pub sent: i64,
    pub dead: i64,
    pub items: Vec<OutboxItem>,
}

/// The outbox as admins see it: counts, and the newest `limit` rows with
/// `status`.
pub async fn view(pool: &PgPool, status: &str, limit: i64) -> sqlx::Result<OutboxView> {
    let (pending, sent, dead): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'pending'),
                count(*) filter (where status = 'sent'),
                count(*) filter (where status = 'dead')
           from outbox",
    )
    .fetch_one(pool)
    .await?;
    let items = sqlx::query_as(
        "select o.id, o.kind, o.user_id, u.email as to, o.order_id, o.status, o.attempts,
                o.next_attempt_at, o.last_error, o.created_at, o.sent_at
           from outbox o left join app_user u on u.id = o.user_id
          where o.status = $1
          order by o.id desc
          limit $2",
    )
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(OutboxView {
        pending,
        sent,
        dead,
        items,
    })
}

/// How long sent emails stay in the outbox for admins to look at.
pub const KEEP_SENT_DAYS: i32 = 30;

/// Deletes sent emails older than [`KEEP_SENT_DAYS`] and email tokens that
/// expired a day ago. Pending and dead rows stay.
pub async fn sweep_sent(pool: &PgPool) -> sqlx::Result<u64> {
    let a = sqlx::query(
        "delete from outbox where status = 'sent' and sent_at < now() - make_interval(days => $1)",
    )
    .bind(KEEP_SENT_DAYS)
    .execute(pool)
    .await?
    .rows_affected();
    let b = sqlx::query("delete from email_token where expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?
        .rows_affected();
    Ok(a + b)
}

/// Puts a dead row back in line with fresh attempts. `false` if there is no
/// dead row with this id.
pub async fn retry_dead(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update outbox set status = 'pending', attempts = 0, next_attempt_at = now()
          where id = $1 and status = 'dead'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
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

    #[test]
    fn report_totals_are_per_currency() {
        let ctx = report_context(&json!({"period": "2026-11-20", "lines": [
            {"product": "A", "currency": "EUR", "orders": 2, "units": 2, "revenue_cents": 3998},
            {"product": "B", "currency": "USD", "orders": 1, "units": 1, "revenue_cents": 500},
            {"product": "C", "currency": "EUR", "orders": 1, "units": 1, "revenue_cents": 2}
        ]}))
        .unwrap();
        assert_eq!(ctx["totals"], json!(["40.00 EUR", "5.00 USD"]));
        assert_eq!(ctx["lines"][0]["revenue"], "39.98 EUR");
    }
}
