//! Delivering the provider's webhooks from the outbox: each row is POSTed to
//! the shop's webhook route, signed at the moment it is sent (Stripe signs
//! every attempt afresh, so a retry hours later still passes the timestamp
//! check), at least once, with the outbox's backoff. A 2xx answer settles
//! the row; a refusal (4xx) parks it as dead for an admin to look at; any
//! other failure is tried again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use secrecy::{ExposeSecret, SecretSlice};
use tokio::task::JoinHandle;

use super::signature;
use crate::config::EmailSettings;
use crate::db::Db;
use crate::email::outbox::{self, Claimed, SendError};

/// Webhook senders per process; each delivers the rows it claimed at once.
const WORKERS: usize = 4;
/// The longest an idle sender waits before looking again: a shopper who just
/// paid waits for this webhook.
const MAX_POLL: Duration = Duration::from_millis(200);

/// The process's webhook senders.
pub struct WebhookSender {
    pool: Db,
    settings: EmailSettings,
    url: String,
    secret: SecretSlice<u8>,
    client: reqwest::Client,
}

impl WebhookSender {
    /// Senders that deliver to `url` (the shop's `/api/v1/payments/webhook`).
    pub fn new(
        pool: Db,
        settings: EmailSettings,
        url: String,
        secret: &[u8],
    ) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Arc::new(WebhookSender {
            pool,
            settings,
            url,
            secret: SecretSlice::from(secret.to_vec()),
            client,
        }))
    }

    /// Starts the senders; they run until aborted.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        (0..WORKERS)
            .map(|_| tokio::spawn(Arc::clone(self).work()))
            .collect()
    }

    async fn work(self: Arc<Self>) {
        loop {
            match outbox::claim(&self.pool, &self.settings, true).await {
                Ok(rows) if !rows.is_empty() => {
                    let this: &WebhookSender = &self;
                    join_all(rows.iter().map(|row| async move {
                        let result = this.deliver(row).await;
                        if let Err(e) =
                            outbox::settle(&this.pool, &this.settings, row, result).await
                        {
                            // Claimed until its lease ends, then sent again.
                            tracing::warn!(id = row.id, error = %e, "cannot record a webhook's outcome");
                        }
                    }))
                    .await;
                }
                Ok(_) => tokio::time::sleep(self.settings.poll.min(MAX_POLL)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim webhooks");
                    tokio::time::sleep(self.settings.poll).await;
                }
            }
        }
    }

    async fn deliver(&self, row: &Claimed) -> Result<(), SendError> {
        let body = row
            .payload
            .clone()
            .ok_or_else(|| SendError::permanent("a webhook row without a body"))?;
        let header = signature::sign(
            self.secret.expose_secret(),
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        let resp = self
            .client
            .post(&self.url)
            .header(signature::HEADER, header)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::transient(format!("webhook: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let message = format!(
            "webhook answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        // Refusals are final, except those that mean "later".
        if status.is_client_error() && !matches!(status.as_u16(), 408 | 409 | 425 | 429) {
            Err(SendError::permanent(message))
        } else {
            Err(SendError::transient(message))
        }
    }
}
