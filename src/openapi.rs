//! The OpenAPI document, generated from the handlers' annotations.
//!
//! The annotations list the answers particular to each route (`403`, `404`,
//! `409`, its own `422`s); [`CommonErrors`] adds the answers that follow from
//! a route's shape (a path parameter, a body, a query, a bearer token), and
//! gives every error answer the one error schema, so that the document lists
//! every status a route can answer (the fuzz test holds it to that).

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "flashsale", description = "Flash sales on PostgreSQL: exactly the stock, one per person, only inside the window. Every error is `{\"error\": {\"code\", \"message\", \"details\"?}}`."),
    paths(
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::me, routes::auth::change_password,
        routes::account::verify, routes::account::resend, routes::account::forgot, routes::account::reset,
        routes::account::unsubscribe,
        routes::products::list, routes::products::get, routes::products::create, routes::products::update,
        routes::sales::list, routes::sales::get, routes::sales::status, routes::sales::create, routes::sales::update,
        routes::sales::purchase, routes::sales::stats, routes::sales::events,
        routes::queue::join, routes::queue::get,
        routes::orders::list, routes::orders::get, routes::orders::cancel, routes::orders::revenue,
        routes::cart::get, routes::cart::put, routes::cart::remove, routes::cart::checkout,
        routes::payments::pay, routes::payments::list, routes::payments::webhook,
        routes::payments::test_charge, routes::payments::test_card, routes::payments::test_succeed,
        routes::payments::test_fail,
        routes::admin::list, routes::admin::update, routes::admin::outbox, routes::admin::retry_email,
        routes::admin::jobs, routes::admin::run_job, routes::admin_orders::list,
        routes::ops::healthz, routes::ops::readyz, routes::ops::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorObject, crate::error::ShortLine)),
    modifiers(&BearerAuth, &CommonErrors),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "catalog", description = "Products and sell counts"),
        (name = "sales", description = "Flash sales and purchases"),
        (name = "orders", description = "Orders and revenue"),
        (name = "cart", description = "The cart, and its checkout into one catalog order"),
        (name = "payments", description = "Paying for orders, and the provider's signed webhooks"),
        (name = "test-provider", description = "The built-in simulated card processor (PAYMENT_PROVIDER=test)"),
        (name = "admin", description = "Administration"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds to every operation the error answers its shape implies, and the
/// error schema to every error answer that names no body of its own.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                common_errors(op, api);
            }
        }
    }
}

fn common_errors(op: &mut Operation, api: bool) {
    let has_param = |place: ParameterIn| {
        op.parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == place)
    };
    let mut add = Vec::new();
    if has_param(ParameterIn::Path) {
        add.push(("400", "bad_request: an id in the path is not an id"));
    }
    // A body read as a JSON object (a named schema); a raw body documents
    // its own answers.
    let json_body = op.request_body.as_ref().is_some_and(|b| {
        b.content
            .get("application/json")
            .is_some_and(|c| matches!(c.schema, Some(RefOr::Ref(_))))
    });
    if json_body {
        add.push(("400", "bad_request: the body is not JSON"));
        add.push(("413", "payload_too_large: the body is over 64 KiB"));
        add.push((
            "422",
            "validation_failed: a field is missing, of the wrong type or out of range",
        ));
    }
    if has_param(ParameterIn::Query) {
        add.push((
            "422",
            "validation_failed: a query parameter is malformed or out of range",
        ));
    }
    if op.security.is_some() {
        add.push(("401", "unauthorized, token_revoked: no valid bearer token"));
    }
    if api {
        add.push((
            "503",
            "busy: the database is unavailable; retry after Retry-After",
        ));
    }
    let responses = &mut op.responses.responses;
    for (status, description) in add {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('4') && !status.starts_with('5') {
            continue;
        }
        if response.content.is_empty() {
            response.content.insert(
                "application/json".to_string(),
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            );
        }
        if matches!(status.as_str(), "429" | "503") {
            let seconds = ObjectBuilder::new().schema_type(Type::Integer).build();
            let mut retry = Header::new(seconds);
            retry.description = Some("seconds to wait before retrying".to_string());
            response
                .headers
                .entry("Retry-After".to_string())
                .or_insert(retry);
        }
    }
}
