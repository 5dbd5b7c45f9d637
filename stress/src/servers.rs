//! What the self-contained harness starts: its private cluster and the
//! settings of the servers it runs on it.

use std::path::PathBuf;

use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg};

/// Settings the harness gives the servers it starts: cheap hashing (buyers are
/// made by SQL anyway) and per-user limits out of the way, since the harness
/// measures the stock path, not the limiter. Scheduled email jobs stay off so
/// that the servers do only the measured work (emails wait in the outbox:
/// the harness sets no transport).
pub fn default_server_env() -> Vec<(String, String)> {
    [
        ("BCRYPT_COST", "4"),
        ("PURCHASE_RATE_PER_SEC", "1000"),
        ("PURCHASE_BURST", "1000"),
        ("AUTH_RATE_PER_SEC", "100000"),
        ("AUTH_BURST", "100000"),
        ("DB_MAX_CONNECTIONS", "20"),
        ("DB_ACQUIRE_TIMEOUT_MS", "10000"),
        ("RUST_LOG", "warn"),
        ("JOBS_ENABLED", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Starts a durable private cluster (fsync on, like a real deployment).
pub async fn start_cluster(dir: PathBuf) -> anyhow::Result<EmbeddedPg> {
    let opts = EmbeddedOptions {
        data_dir: dir,
        bin_dir: std::env::var_os("PG_BIN_DIR").map(PathBuf::from),
        ephemeral: false,
        max_connections: 300,
    };
    Ok(tokio::task::spawn_blocking(move || EmbeddedPg::start(&opts)).await??)
}

pub(crate) fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
