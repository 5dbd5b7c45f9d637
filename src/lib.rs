//! flashsale: a flash-sale engine on PostgreSQL.
//!
//! The library holds everything; the `flashsale` binary, the tests, the
//! benches and the stress harness all run this same code.

/// Accounts, JWT access tokens, refresh tokens, passwords.
pub mod auth;
/// Typed settings read from the environment.
pub mod config;
/// The pool, migrations, and each resource's types and SQL.
pub mod db;
/// Input types that validate themselves.
pub mod domain;
/// The email outbox, its senders and the scheduled email jobs.
pub mod email;
/// The private PostgreSQL launcher.
pub mod embedded_pg;
/// The API error type and its JSON shape.
pub mod error;
/// Request extractors that fail with API errors.
pub mod extract;
/// Per-process rate limits.
pub mod limits;
/// Live sale state in memory, kept in step across instances.
pub mod live;
/// Prometheus metrics.
pub mod metrics;
/// The OpenAPI document.
pub mod openapi;
/// Payments through a provider, its signed webhooks, refunds.
pub mod payment;
/// The purchase engine.
pub mod purchase;
/// The waiting room: joining a sale's line, the draw, admission.
pub mod queue;
/// One resource per path, answering 405 to the methods it lacks.
pub mod resource;
/// HTTP handlers.
pub mod routes;
/// The `flashsale` command line.
pub mod run;
/// Demo data.
pub mod seed;
/// Building and running the HTTP server (the composition root).
pub mod startup;
/// The state shared by every handler.
pub mod state;
/// Logging.
pub mod telemetry;
/// The shop's pages and their assets, served from the binary.
pub mod web;
