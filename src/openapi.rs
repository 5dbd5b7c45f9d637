//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
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
        routes::orders::list, routes::orders::get, routes::orders::cancel, routes::orders::revenue,
        routes::payments::pay, routes::payments::list, routes::payments::webhook,
        routes::payments::test_charge, routes::payments::test_card, routes::payments::test_succeed,
        routes::payments::test_fail,
        routes::admin::list, routes::admin::update, routes::admin::outbox, routes::admin::retry_email,
        routes::admin::jobs, routes::admin::run_job, routes::admin_orders::list,
        routes::ops::healthz, routes::ops::readyz, routes::ops::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "catalog", description = "Products and sell counts"),
        (name = "sales", description = "Flash sales and purchases"),
        (name = "orders", description = "Orders and revenue"),
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
