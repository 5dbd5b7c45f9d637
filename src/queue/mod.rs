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

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::db::queue::{self as db, Ticket};
use crate::error::ApiError;
use crate::live::Board;

/// Most joins served by one transaction.
const MAX_BATCH: usize = 2000;

type Reply = oneshot::Sender<Result<(Ticket, bool), ApiError>>;

/// The waiting rooms of one process.
pub struct Queue {
    pool: PgPool,
    board: Arc<Board>,
    /// One batching task per sale that shoppers joined through this process.
    lines: Mutex<HashMap<i64, mpsc::UnboundedSender<(i64, Reply)>>>,
}

impl Queue {
    pub fn new(pool: PgPool, board: Arc<Board>) -> Arc<Queue> {
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
        let (reply, answer) = oneshot::channel();
        self.line(sale_id)
            .send((user_id, reply))
            .map_err(|_| ApiError::Busy(1))?;
        let (ticket, created) = answer.await.map_err(|_| ApiError::Busy(1))??;
        if let Some(p) = ticket.position {
            live.admission.remember(user_id, p);
        }
        Ok((ticket, created))
    }

    /// The shopper's ticket in the sale's line.
    pub async fn ticket(&self, sale_id: i64, user_id: i64) -> Result<Ticket, ApiError> {
        let live = self.board.get(sale_id).await?;
        let ticket = db::ticket(&self.pool, sale_id, user_id)
            .await?
            .ok_or(ApiError::NotFound("you have not joined this sale's queue"))?;
        if let Some(p) = ticket.position {
            live.admission.remember(user_id, p);
        }
        Ok(ticket)
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
        tokio::spawn(serve_line(self.pool.clone(), sale_id, rx));
        lines.insert(sale_id, tx.clone());
        tx
    }
}

/// Serves one sale's joins: everyone who arrived while the previous batch ran
/// goes in the next one, in arrival order.
async fn serve_line(pool: PgPool, sale_id: i64, mut rx: mpsc::UnboundedReceiver<(i64, Reply)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let users: Vec<i64> = batch.iter().map(|(u, _)| *u).collect();
        match db::join(&pool, sale_id, &users).await {
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
