//! The outbox as admins see it: counts and rows, dead rows queued again, old
//! rows swept.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::Db;

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
pub async fn view(pool: &Db, status: &str, limit: i64) -> sqlx::Result<OutboxView> {
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
pub async fn sweep_sent(pool: &Db) -> sqlx::Result<u64> {
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
pub async fn retry_dead(pool: &Db, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "update outbox set status = 'pending', attempts = 0, next_attempt_at = now()
          where id = $1 and status = 'dead'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
