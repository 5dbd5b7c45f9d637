//! Prometheus metrics, rendered as text at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::db::replica::ReplicaState;
use crate::db::Db;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route pattern and status.
    pub http_requests: IntCounterVec,
    /// Request latency by method and route pattern.
    pub http_duration: HistogramVec,
    /// Purchase attempts by outcome (`created` or the error code).
    pub purchases: IntCounterVec,
    /// Reads that tolerate lag, by the role that served them.
    pub reads: IntCounterVec,
    pool_connections: IntGaugeVec,
    replica_lag: IntGaugeVec,
    failovers: IntGauge,
}

impl Metrics {
    /// Registers every metric in a registry of its own.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("flashsale".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route"],
        )
        .expect("static metric definition");
        let purchases = IntCounterVec::new(
            Opts::new("purchases_total", "Purchase attempts by outcome"),
            &["outcome"],
        )
        .expect("static metric definition");
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by pool (primary: the shared pool, engine: the purchase engine's, replica) and state",
            ),
            &["pool", "state"],
        )
        .expect("static metric definition");
        let reads = IntCounterVec::new(
            Opts::new(
                "db_reads_total",
                "Reads that tolerate lag, by the role that served them (replica, or primary when none is fresh)",
            ),
            &["role"],
        )
        .expect("static metric definition");
        let replica_lag = IntGaugeVec::new(
            Opts::new(
                "db_replica_state",
                "The read replica at the last probe: lag_bytes (-1 unknown), reachable and fresh (0 or 1)",
            ),
            &["measure"],
        )
        .expect("static metric definition");
        let failovers = IntGauge::new(
            "db_primary_failovers",
            "Times the pools moved to another primary host (DATABASE_URL naming several hosts)",
        )
        .expect("static metric definition");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(purchases.clone()),
            Box::new(pool_connections.clone()),
            Box::new(reads.clone()),
            Box::new(replica_lag.clone()),
            Box::new(failovers.clone()),
        ] {
            // Names are fixed and distinct, so registration cannot collide.
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            purchases,
            reads,
            pool_connections,
            replica_lag,
            failovers,
        }
    }

    /// The Prometheus text exposition of every metric.
    /// `pools` are named (`primary`, `engine`, `replica`).
    /// `failovers`: the primary's follower's count, when it has one.
    pub fn render(
        &self,
        pools: &[(&str, &Db)],
        replica: Option<ReplicaState>,
        failovers: Option<u64>,
    ) -> String {
        if let Some(n) = failovers {
            self.failovers.set(n as i64);
        }
        for (name, pool) in pools {
            let idle = pool.num_idle() as i64;
            self.pool_connections
                .with_label_values(&[name, "idle"])
                .set(idle);
            self.pool_connections
                .with_label_values(&[name, "in_use"])
                .set(i64::from(pool.size()) - idle);
        }
        if let Some(r) = replica {
            self.replica_lag
                .with_label_values(&["lag_bytes"])
                .set(r.lag_bytes);
            self.replica_lag
                .with_label_values(&["reachable"])
                .set(i64::from(r.reachable));
            self.replica_lag
                .with_label_values(&["fresh"])
                .set(i64::from(r.fresh));
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
