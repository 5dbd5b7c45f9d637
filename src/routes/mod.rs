//! HTTP routes: thin handlers that parse input, call one function and map the
//! result. Each module wires its own routes with `config`.

pub mod account;
pub mod admin;
pub mod admin_orders;
pub mod auth;
pub mod cart;
pub mod idempotent;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod products;
pub mod queue;
pub mod sales;

use actix_web::web;
use serde::Deserialize;

use crate::error::ApiError;
pub use crate::resource::{at, Methods};

/// Wires every API route under `/api/v1`, the operational endpoints and the
/// shop's pages.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, _| {
        ApiError::BadRequest("an id in the path is not an id".into()).into()
    }))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::Validation {
            message: format!("query: {e}"),
            details: serde_json::json!({ "fields": { "query": e.to_string() } }),
        }
        .into()
    }))
    .service(
        // Sales first: routes are tried in order and each `{id}` pattern
        // costs a regex match, so the purchase storm's and the queue's
        // routes (under one sale's scope) come early.
        web::scope("/api/v1")
            .configure(sales::config)
            .configure(auth::config)
            .configure(account::config)
            .configure(products::config)
            .configure(orders::config)
            .configure(cart::config)
            .configure(payments::config)
            .configure(admin::config)
            .configure(admin_orders::config),
    )
    .configure(ops::config)
    .configure(crate::web::config);
}

/// `?limit=&offset=` on list routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// 0 to 100000, default 0.
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<i64>,
}

impl Page {
    /// `(limit, offset)`, or `validation_failed`.
    pub fn parse(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(20);
        let offset = self.offset.unwrap_or(0);
        let mut problems = crate::domain::Problems::default();
        if !(1..=100).contains(&limit) {
            problems.add("limit", "must be between 1 and 100");
        }
        if !(0..=100_000).contains(&offset) {
            problems.add("offset", "must be between 0 and 100000");
        }
        problems.finish()?;
        Ok((limit, offset))
    }
}

/// `{"items": [...]}`, the shape of every list.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}
