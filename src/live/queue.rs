//! What the board knows of a sale's waiting room: the last place admitted, as
//! announced, and the places of the shoppers it has seen. It may refuse a
//! purchase only when the buyer's place is far enough behind that no
//! announcement still on its way could have admitted it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::LiveSale;
use crate::db::Db;

/// Seconds of admission the board allows for announcements it has not heard
/// yet: a buyer whose place is within `admit_per_sec` × this of the last
/// admitted place goes to the database, which decides.
pub const UNHEARD_SECS: i64 = 2;

/// One sale's admission as this process knows it.
pub struct Admission {
    through: AtomicI64,
    places: Mutex<HashMap<i64, i32>>,
    /// Shoppers this process saw join the pre-queue (no place yet).
    joined: Mutex<HashSet<i64>>,
    /// Every place given at the draw is in `places` (late joiners through
    /// other instances may not be).
    loaded: AtomicBool,
    loading: AtomicBool,
}

impl Admission {
    pub fn new(through: i32) -> Admission {
        Admission {
            through: AtomicI64::new(i64::from(through)),
            places: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashSet::new()),
            loaded: AtomicBool::new(false),
            loading: AtomicBool::new(false),
        }
    }

    /// The last place admitted, as last heard.
    pub fn through(&self) -> i32 {
        i32::try_from(self.through.load(Ordering::Acquire)).unwrap_or(i32::MAX)
    }

    /// Records an announced (or read) `admitted_through`; it only grows.
    /// Returns whether it moved.
    pub fn heard(&self, through: impl Into<i64>) -> bool {
        let through = through.into();
        self.through.fetch_max(through, Ordering::AcqRel) < through
    }

    /// Remembers a shopper's place (from a ticket this process served).
    pub fn remember(&self, user_id: i64, position: i32) {
        if let Ok(mut p) = self.places.lock() {
            p.insert(user_id, position);
        }
    }

    /// Remembers a shopper who joined the pre-queue through this process.
    pub fn remember_joined(&self, user_id: i64) {
        if let Ok(mut j) = self.joined.lock() {
            j.insert(user_id);
        }
    }

    /// Whether this shopper joined the pre-queue through this process.
    pub fn has_joined(&self, user_id: i64) -> bool {
        self.joined.lock().is_ok_and(|j| j.contains(&user_id))
    }

    /// The shopper's place, if this process knows it.
    pub fn place_of(&self, user_id: i64) -> Option<i32> {
        self.places.lock().ok()?.get(&user_id).copied()
    }

    /// Whether the drawn places should be loaded (once, after the draw).
    pub fn needs_places(&self) -> bool {
        !self.loaded.load(Ordering::Acquire) && !self.loading.load(Ordering::Acquire)
    }

    /// Whether this buyer is certainly not admitted: their place is known
    /// and more than [`UNHEARD_SECS`] of admission behind the last one heard.
    /// Places only ever get admitted in order, so that cannot change before
    /// an announcement this process would hear.
    pub fn certainly_waiting(&self, user_id: i64, admit_per_sec: i32) -> bool {
        let margin = i64::from(admit_per_sec) * UNHEARD_SECS;
        self.place_of(user_id)
            .is_some_and(|p| i64::from(p) > self.through.load(Ordering::Acquire) + margin)
    }
}

/// Loads every place given so far in the background (after the draw's first
/// admission), so that the board can turn away buyers far back in line.
pub fn load_places(pool: Db, live: Arc<LiveSale>) {
    if live.admission.loading.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        match crate::db::queue::positions(&pool, live.id).await {
            Ok(rows) => {
                if let Ok(mut p) = live.admission.places.lock() {
                    p.extend(rows);
                }
                live.admission.loaded.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::warn!(sale_id = live.id, error = %e, "loading a queue's places failed")
            }
        }
        live.admission.loading.store(false, Ordering::Release);
    });
}
