//! flashsale: a flash-sale engine on PostgreSQL.
//!
//! The library holds everything; the `flashsale` binary, the tests, the
//! benches and the stress harness all run this same code.

/// Accounts, JWT access tokens, refresh tokens, passwords.
pub mod auth;
/// Products and sell counts.
pub mod catalog;
/// Typed settings read from the environment.
pub mod config;
/// The connection pool and migrations.
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
/// Live sale state in memory, kept in step across instances.
pub mod live;
/// Prometheus metrics.
pub mod metrics;
/// The OpenAPI document.
pub mod openapi;
/// Orders and revenue.
pub mod orders;
/// The purchase engine.
pub mod purchase;
/// HTTP handlers.
pub mod routes;
/// The `flashsale` command line.
pub mod run;
/// Sales and their state by the database clock.
pub mod sales;
/// Demo data.
pub mod seed;
/// Building and running the HTTP server.
pub mod startup;
/// Logging.
pub mod telemetry;
/// The shop's pages and their assets, served from the binary.
pub mod web;
