//! Per-process rate limits (governor token buckets) and their `rate_limited`
//! answer. Every instance keeps its own buckets, so two instances allow twice
//! the rate.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};

use crate::config::Rate;
use crate::error::ApiError;

/// A token bucket per key, refilled at `rate`.
pub fn keyed_limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> DefaultKeyedRateLimiter<K> {
    RateLimiter::keyed(Quota::per_second(rate.per_second).allow_burst(rate.burst))
}

/// The `rate_limited` answer for a refused key, with the wait in whole
/// seconds (at least one) for `Retry-After`.
pub fn rate_limited(not_until: NotUntil<<DefaultClock as Clock>::Instant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
}
