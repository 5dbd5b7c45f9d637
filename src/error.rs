//! The one error type of the HTTP API.
//!
//! Every error leaves the server as `{"error": {"code", "message", "details"?}}`
//! with a stable snake_case `code` that clients branch on (the README lists them).
//! Internal failures are logged with their cause chain and answered with an
//! opaque 500; database unavailability is a retryable 503 `busy`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { message: String, details: Value },
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this token was logged out")]
    TokenRevoked,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("this username is already taken")]
    UsernameTaken,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the sale has not started yet")]
    SaleNotStarted,
    #[error("the sale has ended")]
    SaleEnded,
    #[error("the sale was cancelled")]
    SaleCancelled,
    #[error("{0}")]
    SoldOut(String),
    #[error("you already have an order in this sale")]
    AlreadyPurchased,
    /// `already_purchased`, naming the buyer's live order.
    #[error("you already have an order in this sale")]
    AlreadyHolds { order_id: i64, order_number: String },
    #[error("at most {0} per customer in this sale")]
    QuantityExceedsLimit(i32),
    #[error("the sale has started; its window and stock can no longer change")]
    SaleAlreadyStarted,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("confirm your email address first (see the email we sent)")]
    EmailNotVerified,
    #[error("{0}")]
    JobAlreadyRan(String),
    #[error("{0}")]
    OrderNotCancellable(String),
    #[error("{0}")]
    OrderNotPayable(String),
    #[error("the hold on this order ran out; its unit went back on sale")]
    HoldExpired,
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    PaymentNotOpen(String),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being served; retry in {0} s")]
    RequestInProgress(u64),
    /// `out_of_stock`, naming each short line of a checkout.
    #[error("not enough copies for every line of the cart; nothing was held")]
    OutOfStock(Vec<ShortLine>),
    #[error("the cart is empty")]
    CartEmpty,
    #[error("this sale sells only to shoppers admitted from its queue; join the queue and wait for your turn")]
    NotAdmitted,
    #[error("this sale has no waiting room; buy directly")]
    NoWaitingRoom,
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    #[error("the server is busy; retry in {0} s")]
    Busy(u64),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A `validation_failed` error about one field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        ApiError::Validation {
            message: format!("{field}: {problem}"),
            details: serde_json::json!({ "fields": { field: problem } }),
        }
    }

    /// A `validation_failed` error about several fields at once.
    pub fn fields(problems: Vec<(&str, String)>) -> Self {
        let message = problems
            .iter()
            .map(|(f, p)| format!("{f}: {p}"))
            .collect::<Vec<_>>()
            .join("; ");
        let map: serde_json::Map<String, Value> = problems
            .into_iter()
            .map(|(f, p)| (f.to_string(), Value::String(p)))
            .collect();
        ApiError::Validation {
            message,
            details: serde_json::json!({ "fields": map }),
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation_failed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::TokenRevoked => "token_revoked",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::UsernameTaken => "username_taken",
            ApiError::EmailTaken => "email_taken",
            ApiError::SaleNotStarted => "sale_not_started",
            ApiError::SaleEnded => "sale_ended",
            ApiError::SaleCancelled => "sale_cancelled",
            ApiError::SoldOut(_) => "sold_out",
            ApiError::AlreadyPurchased | ApiError::AlreadyHolds { .. } => "already_purchased",
            ApiError::QuantityExceedsLimit(_) => "quantity_exceeds_limit",
            ApiError::SaleAlreadyStarted => "sale_already_started",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::JobAlreadyRan(_) => "job_already_ran",
            ApiError::OrderNotCancellable(_) => "order_not_cancellable",
            ApiError::OrderNotPayable(_) => "order_not_payable",
            ApiError::HoldExpired => "hold_expired",
            ApiError::InvalidSignature(_) => "invalid_signature",
            ApiError::PaymentNotOpen(_) => "payment_not_open",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RequestInProgress(_) => "request_in_progress",
            ApiError::OutOfStock(_) => "out_of_stock",
            ApiError::CartEmpty => "cart_empty",
            ApiError::NotAdmitted => "not_admitted",
            ApiError::NoWaitingRoom => "no_waiting_room",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Busy(_) => "busy",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// A line of a checkout that the stock cannot fill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ShortLine {
    pub product_id: i64,
    pub requested: i32,
    /// Copies there are now (0 for a product that no longer exists).
    pub available: i64,
}

/// The body of every error answer; also its schema in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorBody)]
pub struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

/// `code` is stable and snake_case; `message` is for people.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorObject)]
pub struct ErrorObject<'a> {
    #[schema(value_type = String, example = "not_found")]
    code: &'a str,
    message: String,
    /// Only some errors have it: `validation_failed` names the fields
    /// (`{"fields": {name: problem}}`), `already_purchased` the order,
    /// `out_of_stock` the short lines (`{"lines": [ShortLine]}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    details: Option<Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. }
            | ApiError::QuantityExceedsLimit(_)
            | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) | ApiError::InvalidToken(_) | ApiError::InvalidSignature(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) | ApiError::TokenRevoked | ApiError::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) | ApiError::EmailNotVerified | ApiError::NotAdmitted => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UsernameTaken
            | ApiError::EmailTaken
            | ApiError::SaleNotStarted
            | ApiError::SaleEnded
            | ApiError::SaleCancelled
            | ApiError::SoldOut(_)
            | ApiError::AlreadyPurchased
            | ApiError::AlreadyHolds { .. }
            | ApiError::RequestInProgress(_)
            | ApiError::SaleAlreadyStarted
            | ApiError::JobAlreadyRan(_)
            | ApiError::OrderNotCancellable(_)
            | ApiError::OrderNotPayable(_)
            | ApiError::HoldExpired
            | ApiError::PaymentNotOpen(_)
            | ApiError::OutOfStock(_)
            | ApiError::CartEmpty
            | ApiError::NoWaitingRoom => StatusCode::CONFLICT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = ?e, "internal error");
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::RateLimited(secs)
            | ApiError::Busy(secs)
            | ApiError::RequestInProgress(secs) => {
                resp.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::Unauthorized(_) | ApiError::TokenRevoked => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        resp.json(self.body())
    }
}

impl ApiError {
    /// The JSON body this error is answered with.
    pub fn body(&self) -> Value {
        let details = match self {
            ApiError::Validation { details, .. } => Some(details.clone()),
            ApiError::AlreadyHolds {
                order_id,
                order_number,
            } => Some(serde_json::json!({ "order_id": order_id, "order_number": order_number })),
            ApiError::OutOfStock(lines) => Some(serde_json::json!({ "lines": lines })),
            _ => None,
        };
        serde_json::to_value(ErrorBody {
            error: ErrorObject {
                code: self.code(),
                message: self.to_string(),
                details,
            },
        })
        .unwrap_or(Value::Null)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Busy(1);
        }
        if let Some(db) = e.as_database_error() {
            // Map constraint violations by name: each one has a meaning.
            match db.constraint() {
                Some("app_user_username_key") => return ApiError::UsernameTaken,
                Some("app_user_email_key") => return ApiError::EmailTaken,
                Some("purchase_order_live_key") => return ApiError::AlreadyPurchased,
                // A token outlives its account: the key has no one to belong to.
                Some("idempotency_key_user_id_fkey") => {
                    return ApiError::Unauthorized("the account of this token no longer exists")
                }
                _ => {}
            }
            // Serialization failures and deadlocks are safe to retry.
            if matches!(db.code().as_deref(), Some("40001") | Some("40P01")) {
                return ApiError::Busy(1);
            }
        }
        ApiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

/// Whether a database error means "the database cannot be reached right now"
/// (full pool, connection refused or lost, server shutting down, read-only
/// during a failover) rather than a fault in the request.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // too_many_connections, and read_only_sql_transaction (a standby
            // answering while a failover is under way)
            Some("57P01") | Some("57P02") | Some("57P03") | Some("53300") | Some("25006")
        ),
        _ => false,
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
