//! The live status stream of one sale (`/sales/{id}/events`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;

use super::{Board, LiveSale};

/// Least time between two pushed statuses of one stream.
const SSE_THROTTLE: Duration = Duration::from_millis(250);
/// Longest silence on a stream.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// The Server-Sent Events of one sale: an `event: status` frame with the
/// same JSON as `/status` at once, then on every change (at most every
/// [`SSE_THROTTLE`]), at each window edge (the state moves without any write)
/// and every [`SSE_KEEPALIVE`]. The stream ends when `closing` turns true, so
/// a stopping server need not wait for its pages; the browser reconnects to
/// whichever instance serves next.
pub fn status_events(
    board: Arc<Board>,
    live: Arc<LiveSale>,
    closing: watch::Receiver<bool>,
) -> impl Stream<Item = String> {
    let rx = live.subscribe();
    futures_util::stream::unfold(
        (board, live, rx, closing, true),
        |(board, live, mut rx, mut closing, first)| async move {
            if *closing.borrow() {
                return None;
            }
            if !first {
                let status = board.status(&live);
                let now = board.now();
                let edge = [status.starts_at, status.ends_at]
                    .into_iter()
                    .filter(|t| *t > now)
                    .map(|t| (t - now).to_std().unwrap_or_default())
                    .min()
                    .unwrap_or(SSE_KEEPALIVE)
                    .min(SSE_KEEPALIVE);
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        // Throttle: one message per burst of changes.
                        tokio::time::sleep(SSE_THROTTLE).await;
                        rx.borrow_and_update();
                    }
                    _ = tokio::time::sleep(edge) => {}
                    _ = closing.wait_for(|c| *c) => return None,
                }
            }
            let status = board.status(&live);
            let data = serde_json::to_string(&status).unwrap_or_default();
            let frame = format!("event: status\ndata: {data}\n\n");
            Some((frame, (board, live, rx, closing, false)))
        },
    )
}
