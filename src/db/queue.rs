//! The waiting room's tables: joining a sale's line, the draw of the
//! pre-queue's places, admission at the sale's rate, and reading a ticket.
//! The invariants and the lock order are written in
//! `migrations/0008_waiting_room.sql`; every function here takes the
//! `sale_queue` row's lock before it gives or admits a place.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::sales::admitted_announcement;
use crate::db::Db;

/// Where a ticket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    /// In line: in the pre-queue (no place yet) or behind `admitted_through`.
    Waiting,
    /// May buy once until `admitted_until`.
    Admitted,
    /// Bought with this admission.
    Used,
    /// Admitted, but the time to buy ran out unused.
    Lapsed,
    /// Still in line, but the sale has nothing left (or is over).
    SoldOut,
}

/// A shopper's place in a sale's line.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub sale_id: i64,
    pub state: TicketState,
    /// 1-based, fixed once given; null in the pre-queue until the start.
    pub position: Option<i32>,
    /// The last place admitted so far: `position - admitted_through` are ahead.
    pub admitted_through: i32,
    /// Places admitted per second.
    pub admit_per_sec: i32,
    /// When an admitted ticket lapses.
    pub admitted_until: Option<DateTime<Utc>>,
    /// The database clock when this answer was made.
    pub server_time: DateTime<Utc>,
}

/// A ticket's row with what its state is judged by.
#[derive(sqlx::FromRow)]
pub struct TicketRow {
    pub user_id: i64,
    pub position: Option<i32>,
    pub admitted_until: Option<DateTime<Utc>>,
    pub used: bool,
    pub admitted_through: i32,
    pub admit_per_sec: i32,
    pub remaining: i64,
    /// Cancelled or ended.
    pub closed: bool,
    pub server_time: DateTime<Utc>,
    /// Made by this join (not there before).
    pub created: bool,
}

impl TicketRow {
    pub fn ticket(&self, sale_id: i64) -> Ticket {
        let state = if self.used {
            TicketState::Used
        } else if let Some(until) = self.admitted_until {
            if until > self.server_time {
                TicketState::Admitted
            } else {
                TicketState::Lapsed
            }
        } else if self.remaining == 0 || self.closed {
            TicketState::SoldOut
        } else {
            TicketState::Waiting
        };
        Ticket {
            sale_id,
            state,
            position: self.position,
            admitted_through: self.admitted_through,
            admit_per_sec: self.admit_per_sec,
            admitted_until: self.admitted_until,
            server_time: self.server_time,
        }
    }
}

const TICKET_COLUMNS: &str =
    "t.user_id, t.position, t.admitted_until, t.used_at is not null as used,
     q.admitted_through, s.admit_per_sec, s.remaining,
     s.cancelled_at is not null or clock_timestamp() >= s.ends_at as closed,
     clock_timestamp() as server_time";

/// The ticket of `user_id` in the sale, if any.
pub async fn ticket(pool: &Db, sale_id: i64, user_id: i64) -> Result<Option<Ticket>, sqlx::Error> {
    let row: Option<TicketRow> = sqlx::query_as(&format!(
        "select {TICKET_COLUMNS}, false as created
           from queue_ticket t join sale_queue q using (sale_id) join sale s on s.id = t.sale_id
          where t.sale_id = $1 and t.user_id = $2"
    ))
    .bind(sale_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.ticket(sale_id)))
}

/// Joins `users` (in arrival order) to the sale's line in one transaction and
/// returns every one's ticket, new or already there. Before the draw a new
/// ticket has no place; after it, new tickets take the next places in the
/// order given. Unknown accounts get no ticket. The caller has checked that
/// the sale has a waiting room and is open; without `maybe_started` (the
/// start is surely more than a moment away) the draw is not asked for.
pub async fn join(
    pool: &Db,
    sale_id: i64,
    users: &[i64],
    maybe_started: bool,
) -> Result<Vec<TicketRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let lock =
        "select drawn_at is not null, last_position from sale_queue where sale_id = $1 for update";
    let locked: Option<(bool, i32)> = sqlx::query_as(lock)
        .bind(sale_id)
        .fetch_optional(&mut *tx)
        .await?;
    let (mut drawn, mut last) = match locked {
        Some(row) => row,
        // The first join makes the line.
        None => {
            sqlx::query("insert into sale_queue (sale_id) values ($1) on conflict do nothing")
                .bind(sale_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query_as(lock)
                .bind(sale_id)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    if !drawn && maybe_started {
        if let Some(n) = draw_if_due(&mut tx, sale_id).await? {
            (drawn, last) = (true, n);
        }
    }
    if !drawn {
        let rows = join_pre_queue(&mut tx, sale_id, users).await?;
        tx.commit().await?;
        return Ok(rows);
    }
    // New tickets, each user once, in arrival order; after the draw each takes
    // the next place, and `last_position` moves by what was inserted. Every
    // look-up of a ticket is one probe of the (sale_id, user_id) key, forced
    // by a correlated LATERAL: a line that fills fast has few rows at its
    // last ANALYZE, and the planner would otherwise read every ticket of the
    // sale and match the batch against each (`user_id = any($2)` as a
    // filter), at a cost that grows with the line. Not a prepared statement
    // either, so a plan made while the line was short does not stay.
    let rows: Vec<TicketRow> = sqlx::query_as(&format!(
        "with b as (select distinct on (u) u, n
                      from unnest($2::bigint[]) with ordinality as b(u, n) order by u, n),
              old as (select x.* from b cross join lateral (
                        select * from queue_ticket x where x.sale_id = $1 and x.user_id = b.u) x),
              new as (select b.u, b.n, row_number() over (order by b.n) as k
                        from b join app_user a on a.id = b.u
                       where b.u not in (select user_id from old)),
              ins as (insert into queue_ticket (sale_id, user_id, position)
                      select $1, u, case when $3 then $4 + k::int end from new order by n
                      returning user_id, position, admitted_until, used_at),
              q as (update sale_queue set last_position = last_position + (select count(*) from ins)::int
                     where sale_id = $1 and $3)
         select t.user_id, t.position, t.admitted_until, t.used_at is not null as used,
                qq.admitted_through,
                s.admit_per_sec, s.remaining,
                s.cancelled_at is not null or clock_timestamp() >= s.ends_at as closed,
                clock_timestamp() as server_time, true as created
           from ins t, sale s, sale_queue qq where s.id = $1 and qq.sale_id = $1
         union all
         select {TICKET_COLUMNS}, false
           from old t join sale_queue q using (sale_id) join sale s on s.id = t.sale_id"
    ))
    .bind(sale_id)
    .bind(users)
    .bind(drawn)
    .bind(last)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Joins before the draw, under the line's lock: new tickets have no place,
/// so one cached statement inserts them (a conflict on the ticket key means
/// the user was there already, or twice in the batch), and only the users it
/// did not insert have their tickets read. The line's facts are read after
/// the insert, in the same transaction.
async fn join_pre_queue(
    tx: &mut PgConnection,
    sale_id: i64,
    users: &[i64],
) -> Result<Vec<TicketRow>, sqlx::Error> {
    // A user becomes a ticket only if the account exists: one probe of its
    // key per user, forced by the correlated LATERAL whatever the statistics
    // say (migrations/0009 states what keeps a ticket's references).
    let created: Vec<i64> = sqlx::query_scalar(
        "insert into queue_ticket (sale_id, user_id)
         select $1, b.u from unnest($2::bigint[]) with ordinality as b(u, n)
          cross join lateral (select 1 from app_user a where a.id = b.u limit 1) known
          order by b.n
         on conflict (sale_id, user_id) do nothing
         returning user_id",
    )
    .bind(sale_id)
    .bind(users)
    .fetch_all(&mut *tx)
    .await?;
    let line: (i32, i32, i64, bool, DateTime<Utc>) = sqlx::query_as(
        "select q.admitted_through, s.admit_per_sec, s.remaining,
                s.cancelled_at is not null or clock_timestamp() >= s.ends_at,
                clock_timestamp()
           from sale_queue q join sale s on s.id = q.sale_id where q.sale_id = $1",
    )
    .bind(sale_id)
    .fetch_one(&mut *tx)
    .await?;
    let (admitted_through, admit_per_sec, remaining, closed, server_time) = line;
    let mut rows: Vec<TicketRow> = created
        .iter()
        .map(|&user_id| TicketRow {
            user_id,
            position: None,
            admitted_until: None,
            used: false,
            admitted_through,
            admit_per_sec,
            remaining,
            closed,
            server_time,
            created: true,
        })
        .collect();
    let made: std::collections::HashSet<i64> = created.into_iter().collect();
    let mut others: Vec<i64> = users
        .iter()
        .copied()
        .filter(|u| !made.contains(u))
        .collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        // One key probe per user (see `join`).
        let old: Vec<TicketRow> = sqlx::query_as(&format!(
            "select {TICKET_COLUMNS}, false as created
               from unnest($2::bigint[]) as b(u)
              cross join lateral (select * from queue_ticket x
                                   where x.sale_id = $1 and x.user_id = b.u) t
               join sale_queue q using (sale_id) join sale s on s.id = t.sale_id"
        ))
        .bind(sale_id)
        .bind(&others)
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        rows.extend(old);
    }
    Ok(rows)
}

/// The draw, if the sale has started and its places are not drawn yet: every
/// ticket of the pre-queue gets a uniformly random place 1..n, once. Needs
/// the `sale_queue` row's lock, taken before (so that every ticket joined
/// before the draw is in it). Returns `n` when it drew.
async fn draw_if_due(tx: &mut PgConnection, sale_id: i64) -> Result<Option<i32>, sqlx::Error> {
    // `gen_random_uuid()` draws from the server's strong random source; ties
    // (one in 2^122) would only be broken by the plan, never by a client.
    sqlx::query_scalar(
        "with d as (select t.user_id, row_number() over (order by gen_random_uuid()) as p
                      from queue_ticket t
                     where t.sale_id = $1 and t.position is null
                       and exists (select 1 from sale s where s.id = $1
                                    and s.starts_at <= clock_timestamp())),
              placed as (update queue_ticket t set position = d.p::int
                           from d where t.sale_id = $1 and t.user_id = d.user_id
                         returning 1)
         update sale_queue q
            set drawn_at = clock_timestamp(), last_position = (select count(*) from placed)::int,
                credited_until = s.starts_at
           from sale s
          where q.sale_id = $1 and s.id = $1 and q.drawn_at is null
            and s.starts_at <= clock_timestamp()
         returning q.last_position",
    )
    .bind(sale_id)
    .fetch_optional(tx)
    .await
}

/// Waiting-room sales whose line needs the admitter: open, started (or
/// starting within `lead_secs`), and not drawn or with places not admitted.
pub async fn due(pool: &Db, lead_secs: f64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select s.id from sale s join sale_queue q on q.sale_id = s.id
          where s.waiting_room and s.cancelled_at is null
            and s.starts_at <= clock_timestamp() + make_interval(secs => $1)
            and s.ends_at > clock_timestamp()
            and (q.drawn_at is null or q.admitted_through < q.last_position)
          order by s.id",
    )
    .bind(lead_secs)
    .fetch_all(pool)
    .await
}

/// One step of admission, in one transaction under the `sale_queue` row's
/// lock: draws if due, then admits the places that `admit_per_sec` has
/// earned since `credited_until` (never past the last place given), each one
/// until now + `admission_secs`, and announces the new `admitted_through`.
/// While the sale has no stock, nothing is admitted and no credit builds up.
/// Safe to run from two instances at once: the lock serializes them and the
/// credit is read from the row. Returns the new `admitted_through` when it
/// moved.
pub async fn admit(pool: &Db, sale_id: i64) -> Result<Option<i32>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The lock first: the draw must see every ticket joined before it.
    sqlx::query("select 1 from sale_queue where sale_id = $1 for update")
        .bind(sale_id)
        .execute(&mut *tx)
        .await?;
    draw_if_due(&mut tx, sale_id).await?;
    // All times are one reading of the database clock.
    let step: Option<(i32, i32)> = sqlx::query_as(&format!(
        "with c as (select q.admitted_through as a, q.last_position as l, s.admit_per_sec as r,
                           s.admission_secs, clock_timestamp() as now, q.credited_until,
                           s.remaining > 0 and s.cancelled_at is null
                             and clock_timestamp() < s.ends_at as open
                      from sale_queue q join sale s on s.id = q.sale_id
                     where q.sale_id = $1 and q.drawn_at is not null),
              e as (select c.*,
                           case when open
                                then least(l, greatest(a, a + floor(extract(epoch from now - credited_until) * r)::int))
                                else a end as n
                      from c),
              adm as (update queue_ticket t
                         set admitted_until = e.now + make_interval(secs => e.admission_secs)
                        from e
                       where t.sale_id = $1 and t.position > e.a and t.position <= e.n),
              upd as (update sale_queue q
                         set admitted_through = e.n,
                             -- Caught up, or closed: no credit is kept for later.
                             credited_until = case when e.n = e.l or not e.open then e.now
                                                   else q.credited_until
                                                        + make_interval(secs => (e.n - e.a)::float8 / e.r) end
                        from e where q.sale_id = $1)
         select e.a, e.n,
                -- Announce the new admitted_through to every instance (sent on commit).
                case when e.n > e.a then (select {announce}) is null end as announced
           from e",
        announce = admitted_announcement("$1", "e.n")
    ))
    .bind(sale_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|(a, n, _): (i32, i32, Option<bool>)| (a, n));
    tx.commit().await?;
    Ok(step.and_then(|(a, n)| (n > a).then_some(n)))
}

/// Every place given in the sale so far, by user (for the live board's
/// memory).
pub async fn positions(pool: &Db, sale_id: i64) -> Result<Vec<(i64, i32)>, sqlx::Error> {
    sqlx::query_as(
        "select user_id, position from queue_ticket where sale_id = $1 and position is not null",
    )
    .bind(sale_id)
    .fetch_all(pool)
    .await
}
