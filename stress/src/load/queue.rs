//! A waiting room's line: joining it and reading one's ticket. Each call is
//! recorded in the ledger like any request; the answer's place, when it has
//! one, is returned to the caller.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::purchase::Lost;
use super::{Kind, Ledger, Load, Sample};
use crate::provision::Buyer;

/// How a join or a ticket read ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketEnd {
    /// 200 or 201: the ticket's state and place (`None` in the pre-queue).
    Ticket {
        created: bool,
        state: String,
        position: Option<i64>,
    },
    /// Try again after this long (`busy`, `rate_limited`).
    Retry(Duration),
    /// Any other answer: its code, or the status when it had none.
    Refused(String),
    /// No answer.
    Unknown,
}

impl Load {
    /// `POST /sales/{sale_id}/queue` as `buyer`.
    pub async fn join_queue(
        &self,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> TicketEnd {
        self.ticket_call(Kind::Join, target, buyer, sale_id, ledger)
            .await
    }

    /// `GET /sales/{sale_id}/queue` as `buyer`.
    pub async fn read_ticket(
        &self,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> TicketEnd {
        self.ticket_call(Kind::Ticket, target, buyer, sale_id, ledger)
            .await
    }

    async fn ticket_call(
        &self,
        kind: Kind,
        target: usize,
        buyer: &Buyer,
        sale_id: i64,
        ledger: &mut Ledger,
    ) -> TicketEnd {
        let sent = Instant::now();
        let sent_us = (sent - self.start).as_micros() as u64;
        let result = self
            .send_routed(target, ledger, |base| {
                let url = format!("{base}/api/v1/sales/{sale_id}/queue");
                let req = match kind {
                    Kind::Join => self.client.post(url),
                    _ => self.client.get(url),
                };
                req.bearer_auth(&buyer.token)
            })
            .await;
        let resp = match result {
            Ok((r, _)) => r,
            Err(Lost::Unreachable) => return TicketEnd::Retry(Duration::from_millis(100)),
            Err(Lost::Cut) => {
                ledger.samples.push(Sample {
                    kind,
                    status: 0,
                    code: None,
                    sent_us,
                    latency_us: sent.elapsed().as_micros() as u64,
                });
                return TicketEnd::Unknown;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().map(str::to_string);
        ledger.samples.push(Sample {
            kind,
            status,
            code: code.clone(),
            sent_us,
            latency_us: sent.elapsed().as_micros() as u64,
        });
        match (status, code.as_deref()) {
            (200 | 201, None) => TicketEnd::Ticket {
                created: status == 201,
                state: body["state"].as_str().unwrap_or("").to_string(),
                position: body["position"].as_i64(),
            },
            (429, Some("rate_limited")) | (503, Some("busy")) => TicketEnd::Retry(
                Duration::from_millis(retry_after.unwrap_or(1).clamp(1, 5) * 1000),
            ),
            (s, c) => TicketEnd::Refused(c.map_or_else(|| s.to_string(), str::to_string)),
        }
    }
}
