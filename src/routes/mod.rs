//! HTTP routes: thin handlers that parse input, call one function and map the
//! result. Each module wires its own routes with `config`.

pub mod account;
pub mod admin;
pub mod admin_orders;
pub mod auth;
pub mod idempotent;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod products;
pub mod sales;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};
use serde::Deserialize;

use crate::error::ApiError;

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
        // costs a regex match, so the purchase storm's route comes early.
        web::scope("/api/v1")
            .configure(sales::config)
            .configure(auth::config)
            .configure(account::config)
            .configure(products::config)
            .configure(orders::config)
            .configure(payments::config)
            .configure(admin::config)
            .configure(admin_orders::config),
    )
    .configure(ops::config)
    .configure(crate::web::config);
}

/// One path and the handlers of its methods, registered as one resource: a
/// method it lacks is answered `405 method_not_allowed` with `Allow` naming
/// the ones it has (a path it does not know stays `404 not_found`).
pub struct Methods {
    resource: actix_web::Resource,
    allow: Vec<&'static str>,
}

/// The methods of `path`, to be added with [`Methods::get`] and the like.
pub fn at(path: &str) -> Methods {
    Methods {
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

impl Methods {
    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("GET", web::get().to(handler))
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("POST", web::post().to(handler))
    }

    pub fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("PATCH", web::patch().to(handler))
    }

    fn route(mut self, method: &'static str, route: actix_web::Route) -> Self {
        self.resource = self.resource.route(route);
        self.allow.push(method);
        self
    }
}

impl HttpServiceFactory for Methods {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        self.resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { method_not_allowed(&allow) }
            }))
            .register(config)
    }
}

/// `405` in the shape of every error, with the `Allow` header.
fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(serde_json::json!({
            "error": {
                "code": "method_not_allowed",
                "message": format!("this path answers only {allow}"),
            }
        }))
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
