//! The waiting room (DESIGN §9): shoppers join a sale's line, the pre-queue's
//! places are drawn at the start, and places are admitted at the sale's rate.
//!
//! Ranks and admission live in PostgreSQL ([`crate::db::queue`], whose
//! migration states the invariants). This module batches the joins of each
//! sale (a storm of shoppers arriving in the first second costs one
//! transaction per batch, not one each) and runs the admitter
//! ([`admitter`]). The purchase engine checks admission inside its locked
//! transaction; the live board turns away from memory only buyers far back in
//! line ([`crate::live::Admission`]).

pub mod admitter;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::db::queue::{self as db, Ticket, TicketState};
use crate::db::Db;
use crate::error::ApiError;
use crate::live::{Board, LiveSale, BOUNDARY_MARGIN};

/// Most joins served by one transaction.
const MAX_BATCH: usize = 2000;
/// A batch smaller than this waits [`LINGER`] for more joins.
const LINGER_BELOW: usize = 64;
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Joins this close to the start (by the estimated database clock) ask the
/// database whether the draw is due.
const DRAW_MARGIN: chrono::Duration = chrono::Duration::seconds(1);

type Reply = oneshot::Sender<Result<(Ticket, bool), ApiError>>;

/// The waiting rooms of one process.
pub struct Queue {
    pool: Db,
    board: Arc<Board>,
    /// One batching task per sale that shoppers joined through this process.
    lines: Mutex<HashMap<i64, mpsc::UnboundedSender<(i64, Reply)>>>,
}

impl Queue {
    pub fn new(pool: Db, board: Arc<Board>) -> Arc<Queue> {
        Arc::new(Queue {
            pool,
            board,
            lines: Mutex::new(HashMap::new()),
        })
    }

    /// Joins the sale's line, or finds the ticket already there: the ticket
    /// and whether it is new. Runs to completion even if the caller stops
    /// waiting.
    pub async fn join(&self, sale_id: i64, user_id: i64) -> Result<(Ticket, bool), ApiError> {
        let live = self.board.get(sale_id).await?;
        let terms = live.terms();
        if !terms.waiting_room {
            return Err(ApiError::NoWaitingRoom);
        }
        if terms.cancelled {
            return Err(ApiError::SaleCancelled);
        }
        if self.board.now() >= terms.ends_at {
            return Err(ApiError::SaleEnded);
        }
        if let Some(ticket) = self.pre_queue_ticket(&live, user_id) {
            return Ok((ticket, false));
        }
        let (reply, answer) = oneshot::channel();
        self.line(sale_id)
            .send((user_id, reply))
            .map_err(|_| ApiError::Busy(1))?;
        let (ticket, created) = answer.await.map_err(|_| ApiError::Busy(1))??;
        match ticket.position {
            Some(p) => live.admission.remember(user_id, p),
            None => live.admission.remember_joined(user_id),
        }
        Ok((ticket, created))
    }

    /// The shopper's ticket in the sale's line.
    pub async fn ticket(&self, sale_id: i64, user_id: i64) -> Result<Ticket, ApiError> {
        let live = self.board.get(sale_id).await?;
        if let Some(ticket) = self.pre_queue_ticket(&live, user_id) {
            return Ok(ticket);
        }
        let ticket = db::ticket(&self.pool, sale_id, user_id)
            .await?
            .ok_or(ApiError::NotFound("you have not joined this sale's queue"))?;
        match ticket.position {
            Some(p) => live.admission.remember(user_id, p),
            None => live.admission.remember_joined(user_id),
        }
        Ok(ticket)
    }

    /// The ticket of a shopper who joined the pre-queue through this
    /// process, answered from memory while the sale is surely not started
    /// (so not drawn): it can only be waiting, without a place. Repeated
    /// joins (bots hammer) cost no transaction then.
    fn pre_queue_ticket(&self, live: &LiveSale, user_id: i64) -> Option<Ticket> {
        let terms = live.terms();
        let now = self.board.now();
        if terms.cancelled
            || now >= terms.starts_at - BOUNDARY_MARGIN
            || !live.admission.has_joined(user_id)
        {
            return None;
        }
        Some(Ticket {
            sale_id: live.id,
            state: if live.remaining() == 0 {
                TicketState::SoldOut
            } else {
                TicketState::Waiting
            },
            position: None,
            admitted_through: live.admission.through(),
            admit_per_sec: terms.admit_per_sec,
            admitted_until: None,
            server_time: now,
        })
    }

    fn line(&self, sale_id: i64) -> mpsc::UnboundedSender<(i64, Reply)> {
        let mut lines = match self.lines.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tx) = lines.get(&sale_id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve_line(
            self.pool.clone(),
            self.board.clone(),
            sale_id,
            rx,
        ));
        lines.insert(sale_id, tx.clone());
        tx
    }
}

/// Serves one sale's joins: everyone who arrived while the previous batch ran
/// goes in the next one, in arrival order, and a batch of fewer than
/// [`LINGER_BELOW`] waits [`LINGER`] for whoever comes meanwhile: with
/// several instances each one's batches are small (a third of the storm), and
/// then the transactions, not the tickets, are most of the database's work.
async fn serve_line(
    pool: Db,
    board: Arc<Board>,
    sale_id: i64,
    mut rx: mpsc::UnboundedReceiver<(i64, Reply)>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A small batch waits a moment for more: each batch costs the
        // database a transaction, and in a storm the wait fills it.
        if batch.len() < LINGER_BELOW {
            tokio::time::sleep(LINGER).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(join) => batch.push(join),
                    Err(_) => break,
                }
            }
        }
        let users: Vec<i64> = batch.iter().map(|(u, _)| *u).collect();
        // Well before the start (by the estimated database clock) the draw
        // cannot be due, and the batch need not ask.
        let maybe_started = match board.get(sale_id).await {
            Ok(live) => board.now() >= live.terms().starts_at - DRAW_MARGIN,
            Err(_) => true,
        };
        match db::join(&pool, sale_id, &users, maybe_started).await {
            Ok(rows) => {
                let mut by_user: HashMap<i64, (Ticket, bool)> = rows
                    .into_iter()
                    .map(|r| (r.user_id, (r.ticket(sale_id), r.created)))
                    .collect();
                for (user, reply) in batch.drain(..) {
                    // The same user twice in a batch: the first is told it is
                    // new, the rest that it was there.
                    let answer = match by_user.get_mut(&user) {
                        Some((t, created)) => Ok((t.clone(), std::mem::take(created))),
                        None => Err(ApiError::Unauthorized(
                            "the account of this token no longer exists",
                        )),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::warn!(sale_id, error = %e, "a batch of queue joins failed");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(ApiError::Busy(1)));
                }
            }
        }
    }
}
