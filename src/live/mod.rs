//! Live sale state in memory: the shortcut in front of the database.
//!
//! For every sale that shoppers touch, the board keeps its terms (window,
//! cancellation, limit), its remaining stock, and the buyers known to hold an
//! order. It answers `/status`, pushes changes to SSE subscribers, and lets the
//! purchase engine turn away requests that cannot succeed (outside the window,
//! sold out, repeat buyers) without touching the database.
//!
//! The database stays the only authority for a success: the board may only
//! ever be *behind* it in a way that sends a request on to the database, never
//! in a way that refuses one that could succeed. Every change is broadcast to
//! all instances on the sales channel ([`crate::db::sales::Announcement`]:
//! reload after an admin change; the remaining stock after a purchase; the
//! remaining stock and "forget the holders" after a release, since a released
//! buyer may buy again and the stock rose). Between a release's commit and
//! the arrival of its announcement (milliseconds), another instance may still
//! answer `sold_out` or `already_purchased` from what it knew. Times are
//! judged by an estimate of the database clock, and requests within
//! [`BOUNDARY_MARGIN`] of a window edge always go to the database.

mod events;
mod queue;

pub use events::status_events;
pub use queue::Admission;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::db::orders::LIVE;
use crate::db::sales::{Announcement, SaleState, SaleStatus};
use crate::db::Db;
use crate::error::ApiError;

/// Requests this close to `starts_at` or `ends_at` (by the estimated database
/// clock) are always decided by the database.
pub const BOUNDARY_MARGIN: chrono::Duration = chrono::Duration::milliseconds(250);

/// The fixed terms of a sale (they change only by an admin's PATCH).
#[derive(Clone, Debug)]
pub struct Terms {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub cancelled: bool,
    pub per_user_limit: i32,
    /// Sells only to shoppers admitted from its queue.
    pub waiting_room: bool,
    pub admit_per_sec: i32,
}

/// A holder's live order, as `already_purchased` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldOrder {
    pub id: i64,
    pub number: String,
}

/// One sale on the board.
pub struct LiveSale {
    pub id: i64,
    terms: RwLock<Terms>,
    remaining: AtomicI64,
    /// Buyers known to hold a live order, with it when known.
    buyers: Mutex<HashMap<i64, Option<HeldOrder>>>,
    /// Every holder of an order is in `buyers` (loaded once the stock ran
    /// out, when no order can be added any more).
    holders_complete: AtomicBool,
    /// A load of the holders is under way.
    holders_loading: AtomicBool,
    /// Counts [`LiveSale::forget_buyers`]: holders read before a release
    /// must not be remembered after it.
    releases: AtomicU64,
    /// The waiting room's admission as last heard.
    pub admission: Admission,
    changed: watch::Sender<u64>,
}

impl LiveSale {
    /// The current terms.
    pub fn terms(&self) -> Terms {
        match self.terms.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Remaining stock as last known.
    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Acquire)
    }

    /// `Some` when this user is known to hold a live order in this sale
    /// (with the order when known).
    pub fn known_holding(&self, user_id: i64) -> Option<Option<HeldOrder>> {
        self.buyers.lock().ok()?.get(&user_id).cloned()
    }

    /// Whether this user is known to hold a live order in this sale.
    pub fn is_known_buyer(&self, user_id: i64) -> bool {
        self.known_holding(user_id).is_some()
    }

    /// Forgets every known holder: some order was released, and its buyer
    /// may buy again. Until holders are learned anew, repeat buyers go to the
    /// database, which answers exactly.
    /// Returns the mark from before (the new one is one more).
    pub fn forget_buyers(&self) -> u64 {
        let mut b = match self.buyers.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = self.releases.fetch_add(1, Ordering::AcqRel);
        self.holders_complete.store(false, Ordering::Release);
        b.clear();
        before
    }

    /// A mark to pass to [`LiveSale::remember_buyers_since`].
    pub fn release_mark(&self) -> u64 {
        self.releases.load(Ordering::Acquire)
    }

    /// Records holders read after `mark` was taken, unless a release came
    /// between (then some of them may hold nothing any more). With `all`
    /// (every holder of a sold-out sale was read) and the sale still sold
    /// out, the set is complete.
    pub fn remember_buyers_since(
        &self,
        mark: u64,
        users: Vec<(i64, Option<HeldOrder>)>,
        all: bool,
    ) {
        let Ok(mut b) = self.buyers.lock() else {
            return;
        };
        if self.releases.load(Ordering::Acquire) != mark {
            return;
        }
        for (user, order) in users {
            // A known order is kept over "holds one, which is not known".
            let known = b.entry(user).or_insert(None);
            if order.is_some() {
                *known = order;
            }
        }
        if all && self.remaining() == 0 {
            self.holders_complete.store(true, Ordering::Release);
        }
    }

    /// Sets the remaining stock read under the sale's lock (or announced by
    /// another instance) and wakes subscribers if it moved.
    pub fn set_remaining(&self, n: i64) {
        if self.remaining.swap(n, Ordering::AcqRel) != n {
            if n > 0 {
                self.holders_complete.store(false, Ordering::Release);
            }
            self.changed.send_modify(|v| *v += 1);
        }
    }

    fn set_terms(&self, t: Terms, remaining: i64) {
        if let Ok(mut cur) = self.terms.write() {
            *cur = t;
        }
        self.remaining.store(remaining, Ordering::Release);
        if remaining > 0 {
            self.holders_complete.store(false, Ordering::Release);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Every live sale of this process.
pub struct Board {
    pool: Db,
    sales: RwLock<HashMap<i64, Arc<LiveSale>>>,
    /// Database clock minus local clock, in microseconds.
    offset_us: AtomicI64,
}

#[derive(sqlx::FromRow)]
struct Row {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    cancelled: bool,
    remaining: i64,
    per_user_limit: i32,
    waiting_room: bool,
    admit_per_sec: i32,
    admitted_through: i32,
    db_now: DateTime<Utc>,
}

impl Board {
    pub fn new(pool: Db) -> Arc<Board> {
        Arc::new(Board {
            pool,
            sales: RwLock::new(HashMap::new()),
            offset_us: AtomicI64::new(0),
        })
    }

    /// The database clock, estimated from the last reading.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    fn cached(&self, id: i64) -> Option<Arc<LiveSale>> {
        self.sales.read().ok().and_then(|m| m.get(&id).cloned())
    }

    /// A sale already on the board and its release mark (taken before a
    /// read whose holders may be remembered).
    pub fn cached_mark(&self, id: i64) -> Option<(Arc<LiveSale>, u64)> {
        let live = self.cached(id)?;
        let mark = live.release_mark();
        Some((live, mark))
    }

    /// The live sale, loaded from the database on first use; `not_found` if
    /// there is no such sale.
    pub async fn get(&self, id: i64) -> Result<Arc<LiveSale>, ApiError> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        let row = self
            .read(id)
            .await?
            .ok_or(ApiError::NotFound("no such sale"))?;
        let mut map = self
            .sales
            .write()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("board lock poisoned")))?;
        let live = map.entry(id).or_insert_with(|| {
            let (changed, _) = watch::channel(0);
            Arc::new(LiveSale {
                id,
                terms: RwLock::new(terms_of(&row)),
                remaining: AtomicI64::new(row.remaining),
                buyers: Mutex::new(HashMap::new()),
                holders_complete: AtomicBool::new(false),
                holders_loading: AtomicBool::new(false),
                releases: AtomicU64::new(0),
                admission: Admission::new(row.admitted_through),
                changed,
            })
        });
        Ok(live.clone())
    }

    async fn read(&self, id: i64) -> Result<Option<Row>, sqlx::Error> {
        let sent = Instant::now();
        let local_before = Utc::now();
        let row: Option<Row> = sqlx::query_as(
            "select s.starts_at, s.ends_at, s.cancelled_at is not null as cancelled, s.remaining,
                    s.per_user_limit, s.waiting_room, s.admit_per_sec,
                    coalesce(q.admitted_through, 0) as admitted_through, now() as db_now
               from sale s left join sale_queue q on q.sale_id = s.id where s.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let rtt = sent.elapsed();
        if let Some(r) = &row {
            // Trust only quick readings: the error is at most half the round trip.
            if rtt < Duration::from_millis(20) {
                let mid = local_before + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
                let offset = (r.db_now - mid).num_microseconds().unwrap_or(0);
                self.offset_us.store(offset, Ordering::Relaxed);
            }
        }
        Ok(row)
    }

    /// Re-reads a sale's terms and stock (after an admin change, or when
    /// announcements may have been missed).
    pub async fn reload(&self, id: i64) {
        let Some(live) = self.cached(id) else { return };
        match self.read(id).await {
            Ok(Some(row)) => {
                live.admission.heard(row.admitted_through);
                live.set_terms(terms_of(&row), row.remaining)
            }
            Ok(None) => {
                if let Ok(mut m) = self.sales.write() {
                    m.remove(&id);
                }
            }
            Err(e) => tracing::warn!(sale_id = id, error = %e, "reloading a sale failed"),
        }
    }

    /// Whether every holder of an order in this sold-out sale is known here.
    /// The first time it is not, the holders are loaded in the background
    /// (until then requests go to the database, which answers exactly).
    /// Called only once `remaining` is 0: that value comes from a committed
    /// state, so every order already exists when the load reads them.
    pub fn holders_known(&self, live: &Arc<LiveSale>) -> bool {
        if live.holders_complete.load(Ordering::Acquire) {
            return true;
        }
        if !live.holders_loading.swap(true, Ordering::AcqRel) {
            let (pool, live) = (self.pool.clone(), Arc::clone(live));
            let mark = live.release_mark();
            tokio::spawn(async move {
                let holders: Result<Vec<(i64, i64, String)>, sqlx::Error> =
                    sqlx::query_as(&format!(
                        "select user_id, id, number from purchase_order
                      where sale_id = $1 and status in {LIVE}"
                    ))
                    .bind(live.id)
                    .fetch_all(&pool)
                    .await;
                match holders {
                    // Stock put back meanwhile (before a start, or a release)
                    // voids the load.
                    Ok(rows) => {
                        let holders = rows
                            .into_iter()
                            .map(|(user, id, number)| (user, Some(HeldOrder { id, number })))
                            .collect();
                        live.remember_buyers_since(mark, holders, true)
                    }
                    Err(e) => {
                        tracing::warn!(sale_id = live.id, error = %e, "loading a sale's buyers failed")
                    }
                }
                live.holders_loading.store(false, Ordering::Release);
            });
        }
        false
    }

    /// Applies an announcement from the sales channel
    /// ([`crate::db::sales::CHANNEL`]).
    pub async fn apply(&self, payload: &str) {
        match Announcement::parse(payload) {
            Some(Announcement::Remaining { sale_id, remaining }) => {
                if let Some(live) = self.cached(sale_id) {
                    live.set_remaining(remaining);
                }
            }
            Some(Announcement::Released { sale_id, remaining }) => {
                if let Some(live) = self.cached(sale_id) {
                    let _ = live.forget_buyers();
                    live.set_remaining(remaining);
                }
            }
            Some(Announcement::Admitted { sale_id, through }) => {
                if let Some(live) = self.cached(sale_id) {
                    if live.admission.heard(through) {
                        live.changed.send_modify(|v| *v += 1);
                    }
                    if live.admission.needs_places() {
                        queue::load_places(self.pool.clone(), live);
                    }
                }
            }
            Some(Announcement::Changed(id)) => self.reload(id).await,
            None => tracing::warn!(payload, "unreadable sale announcement"),
        }
    }

    /// The status of a live sale, by the estimated database clock.
    pub fn status(&self, live: &LiveSale) -> SaleStatus {
        let t = live.terms();
        let now = self.now();
        let remaining = live.remaining();
        let state = if t.cancelled {
            SaleState::Cancelled
        } else if now < t.starts_at {
            SaleState::Upcoming
        } else if now >= t.ends_at {
            SaleState::Ended
        } else if remaining == 0 {
            SaleState::SoldOut
        } else {
            SaleState::Active
        };
        SaleStatus {
            state,
            remaining,
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            server_time: now,
            admitted_through: t.waiting_room.then(|| live.admission.through()),
            admit_per_sec: t.waiting_room.then_some(t.admit_per_sec),
        }
    }

    /// Reloads every cached sale (announcements may have been missed).
    pub async fn reload_all(&self) {
        let ids: Vec<i64> = self
            .sales
            .read()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.reload(id).await;
        }
    }
}

fn terms_of(r: &Row) -> Terms {
    Terms {
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        cancelled: r.cancelled,
        per_user_limit: r.per_user_limit,
        waiting_room: r.waiting_room,
        admit_per_sec: r.admit_per_sec,
    }
}
