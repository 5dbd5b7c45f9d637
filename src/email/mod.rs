//! Email: the transactional outbox, its senders and the scheduled jobs.
//!
//! Every email is first a row in `outbox`, written in the same transaction as
//! the event that causes it (a purchase's confirmation commits with its
//! order). Senders ([`outbox`]) claim due rows with `FOR UPDATE SKIP LOCKED`,
//! send them through lettre under one rate limit per process, and retry with
//! exponential backoff; a row that keeps failing is parked as `dead`.
//! Delivery is at-least-once: a sender that dies between claim and send
//! leaves its rows to be claimed again when their lease ends. The values an
//! email is rendered with are read when it is sent (`context`). Admins see
//! the outbox and queue dead rows again through [`admin`].
//!
//! Scheduled jobs ([`jobs`]) run at most once per period across every
//! instance and restart, because a job's run is a row with a unique key,
//! written in the transaction that queues its emails.

pub mod admin;
mod context;
pub mod jobs;
pub mod outbox;
mod render;

pub use render::{money, Rendered, Templates};

/// The kinds of email, as stored in `outbox.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    OrderConfirmation,
    /// A hold ran out unpaid; its unit went back on sale.
    HoldExpired,
    /// An admin cancelled the order (or its sale).
    OrderCancelled,
    /// The provider reported the order's payment.
    PaymentReceived,
    /// The payment failed; the unit went back on sale.
    PaymentFailed,
    /// The money went back (an admin cancelled a paid order, or a payment
    /// came after its unit was gone).
    OrderRefunded,
    VerifyEmail,
    PasswordReset,
    SellerDailyDigest,
    SellerMonthlyReport,
    NewProducts,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::OrderConfirmation,
        Kind::HoldExpired,
        Kind::OrderCancelled,
        Kind::PaymentReceived,
        Kind::PaymentFailed,
        Kind::OrderRefunded,
        Kind::VerifyEmail,
        Kind::PasswordReset,
        Kind::SellerDailyDigest,
        Kind::SellerMonthlyReport,
        Kind::NewProducts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderConfirmation => "order_confirmation",
            Kind::HoldExpired => "hold_expired",
            Kind::OrderCancelled => "order_cancelled",
            Kind::PaymentReceived => "payment_received",
            Kind::PaymentFailed => "payment_failed",
            Kind::OrderRefunded => "order_refunded",
            Kind::VerifyEmail => "verify_email",
            Kind::PasswordReset => "password_reset",
            Kind::SellerDailyDigest => "seller_daily_digest",
            Kind::SellerMonthlyReport => "seller_monthly_report",
            Kind::NewProducts => "new_products",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}
