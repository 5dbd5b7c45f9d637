//! Black-box tests over HTTP against a real PostgreSQL: each test gets a fresh
//! database and its own server on a free port.

mod helpers;
mod mailbox;

mod admin_orders;
mod admission;
mod auth;
mod bots;
mod browser;
mod browser_cart;
mod browser_queue;
mod cart;
mod catalog;
mod catalog_reports;
mod checkout;
mod combiner;
mod concurrency;
mod dockerfile;
mod email;
mod failover;
mod fuzz;
mod holds;
mod hostile;
mod idempotency;
mod ops;
mod orders;
mod pages;
mod payments;
mod pooler;
mod purchase;
mod queue;
mod queue_joins;
mod rbac;
mod replica;
mod sales;
mod search;
mod tls;
mod validation;
