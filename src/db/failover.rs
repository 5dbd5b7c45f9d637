//! Following the primary through a failover, without a restart.
//!
//! `DATABASE_URL` (and `DATABASE_LISTEN_URL`) may name several hosts, as
//! libpq does: `postgres://user:pw@host1:5432,host2:5432/db`, optionally
//! with `target_session_attrs=read-write`. The engine then opens its
//! connections to the one host that accepts writes (not in recovery), and a
//! [`Follower`] watches it: every [`PROBE_EVERY`] one kept connection asks
//! `pg_is_in_recovery()`. When that fails or says the host is a standby now,
//! the follower asks every host in turn on fresh connections, and once one
//! accepts writes it re-points every pool it follows there
//! (`set_connect_options`) and marks the connections opened before as stale:
//! they are dropped when next acquired, so none keeps writing to, or
//! reading from, the old primary. Meanwhile requests get `busy` (the old
//! primary refuses or a standby answers `read_only_sql_transaction`).
//!
//! With one host and `target_session_attrs=read-write`, the same watch
//! follows a host name that an operator (or a managed service) re-points
//! in DNS: each fresh connection resolves the name again.
//!
//! Only a host that itself says it accepts writes is followed; while the
//! current primary answers as one, no other host is asked, so a second
//! writable host (an old primary started again without being demoted) does
//! not pull the engine away. Fencing the old primary is the operator's part
//! of a failover, as with any PostgreSQL failover.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, PgPool};

/// How often the current primary is asked whether it still accepts writes.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How long one host may take to connect and answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The hosts one URL names, and which of them the pools point at.
pub struct Follower {
    /// Every host, in the URL's order, with the URL's other options.
    hosts: Vec<PgConnectOptions>,
    /// The host the pools point at now.
    current: AtomicUsize,
    /// The pools to re-point, each with what makes its options of a host's.
    pools: Mutex<Vec<(PgPool, Shape)>>,
    epoch: Arc<Epoch>,
    /// Times the pools were re-pointed to another host.
    failovers: AtomicU64,
}

/// What turns a host's options into the options a pool opens connections
/// with (its statement cache, its application name).
type Shape = Box<dyn Fn(PgConnectOptions) -> PgConnectOptions + Send + Sync>;

/// When the pools were last re-pointed: connections opened before are stale.
/// Apart from the follower so that the pools' acquire hook can hold it
/// without holding the pools.
#[derive(Debug)]
pub struct Epoch {
    born: Instant,
    /// Milliseconds after `born` of the last re-pointing (0: never).
    repointed_ms: AtomicU64,
}

impl Epoch {
    /// Whether a connection of this age was opened before the last
    /// re-pointing.
    pub fn is_stale(&self, meta: &PoolConnectionMetadata) -> bool {
        let repointed = self.repointed_ms.load(Ordering::Relaxed);
        let opened = (self.born.elapsed().saturating_sub(meta.age)).as_millis() as u64;
        repointed > 0 && opened < repointed
    }
}

/// Splits a URL that names several hosts (`scheme://userinfo@h1:p1,h2:p2/…`)
/// into one URL per host, and drops `target_session_attrs` (the engine
/// always follows the host that accepts writes). `Ok(None)`: one host and no
/// `target_session_attrs`, nothing to follow.
pub fn split_hosts(url: &str) -> Result<Option<Vec<String>>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("not a URL like postgres://user:password@host:port/database")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut attrs = None;
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|kv| match kv.strip_prefix("target_session_attrs=") {
            Some(v) => {
                attrs = Some(v);
                false
            }
            None => true,
        })
        .collect();
    if let Some(v) = attrs {
        if !matches!(v, "read-write" | "primary") {
            return Err(format!(
                "target_session_attrs={v}: the engine writes, so only read-write (or primary) fits"
            ));
        }
    }
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() == 1 && attrs.is_none() {
        return Ok(None);
    }
    if hosts.iter().any(|h| h.is_empty() || h.starts_with('%')) {
        return Err(
            "every host in the list needs a name or address (sockets are not followed)".into(),
        );
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    Ok(Some(
        hosts
            .iter()
            .map(|h| format!("{scheme}://{userinfo}{h}{path}{query}"))
            .collect(),
    ))
}

/// What one host said to a probe.
enum Answer {
    /// It accepts writes; the probe's connection, to keep.
    Writable(PgConnection),
    Standby,
    Unreachable(String),
}

async fn ask(options: PgConnectOptions) -> Answer {
    let probe = async move {
        let mut conn = options.connect().await?;
        let standby = in_recovery(&mut conn).await?;
        Ok::<_, sqlx::Error>((standby, conn))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok((false, conn))) => Answer::Writable(conn),
        Ok(Ok((true, _))) => Answer::Standby,
        Ok(Err(e)) => Answer::Unreachable(e.to_string()),
        Err(_) => Answer::Unreachable("no answer within 1 s".into()),
    }
}

/// One statement over the simple protocol, so it needs no transaction
/// through a transaction-mode pooler either. (Boxed: the watch's future
/// must be `Send` for every lifetime of the connection it borrows.)
fn in_recovery(conn: &mut PgConnection) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    use sqlx::{Executor, Row};
    Box::pin(async move {
        // A bare string with no arguments goes as a simple Query message.
        let row = conn.fetch_one("select pg_is_in_recovery()").await?;
        row.try_get(0)
    })
}

fn host_of(o: &PgConnectOptions) -> String {
    format!("{}:{}", o.get_host(), o.get_port())
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("current", &self.current_host())
            .field("hosts", &self.hosts.len())
            .field("failovers", &self.failovers())
            .finish()
    }
}

impl Follower {
    /// The follower of `hosts` (one option set per host), pointing at the
    /// first that accepts writes; an error naming what each host answered
    /// when none does.
    pub async fn find(hosts: Vec<PgConnectOptions>) -> Result<Arc<Follower>, String> {
        let mut heard = Vec::new();
        for (i, o) in hosts.iter().enumerate() {
            match ask(o.clone()).await {
                Answer::Writable(conn) => {
                    let _ = conn.close().await;
                    return Ok(Arc::new(Follower {
                        current: AtomicUsize::new(i),
                        hosts,
                        pools: Mutex::default(),
                        epoch: Arc::new(Epoch {
                            born: Instant::now(),
                            repointed_ms: AtomicU64::new(0),
                        }),
                        failovers: AtomicU64::new(0),
                    }));
                }
                Answer::Standby => heard.push(format!("{} is a standby", host_of(o))),
                Answer::Unreachable(e) => heard.push(format!("{}: {e}", host_of(o))),
            }
        }
        Err(format!("no host accepts writes ({})", heard.join("; ")))
    }

    /// The options of the host followed now.
    pub fn current(&self) -> PgConnectOptions {
        self.hosts[self.current.load(Ordering::Relaxed)].clone()
    }

    /// `host:port` of the host followed now (for `/readyz`).
    pub fn current_host(&self) -> String {
        host_of(&self.current())
    }

    /// Times the pools moved to another host.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// What tells the pools' acquire hook which connections are stale.
    pub fn epoch(&self) -> Arc<Epoch> {
        Arc::clone(&self.epoch)
    }

    /// Re-points `pool` with the others from now on, to `shape` of the new
    /// host's options. It should already point at `shape` of
    /// [`Follower::current`].
    pub fn adopt(
        &self,
        pool: &PgPool,
        shape: impl Fn(PgConnectOptions) -> PgConnectOptions + Send + Sync + 'static,
    ) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pool.clone(), Box::new(shape)));
    }

    /// Watches the primary until aborted (see the module docs).
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A connection to the primary, asked at every tick.
        let mut kept: Option<PgConnection> = None;
        // Since when the primary has not answered as one.
        let mut lost: Option<Instant> = None;
        loop {
            tick.tick().await;
            if let Some(conn) = kept.as_mut() {
                let answer = tokio::time::timeout(PROBE_TIMEOUT, in_recovery(conn)).await;
                if matches!(answer, Ok(Ok(false))) {
                    continue;
                }
                kept = None;
            }
            // Every host is asked on a fresh connection, the current one first.
            let now = self.current.load(Ordering::Relaxed);
            let n = self.hosts.len();
            let order: Vec<usize> = (0..n).map(|k| (now + k) % n).collect();
            let mut found = None;
            for i in order {
                if let Answer::Writable(conn) = ask(self.hosts[i].clone()).await {
                    found = Some((i, conn));
                    break;
                }
            }
            match found {
                // Whatever was opened before a lost probe is suspect, even
                // on the same host (it may have restarted).
                Some((i, conn)) => {
                    if lost.is_some() || i != now {
                        self.repoint(i, lost.take().map(|t| t.elapsed()));
                    }
                    kept = Some(conn);
                }
                None if lost.is_none() => {
                    tracing::warn!(
                        primary = %self.current_host(),
                        "the primary does not accept writes; looking for the host that does"
                    );
                    lost = Some(Instant::now());
                }
                None => {}
            }
        }
    }

    fn repoint(&self, to: usize, searched: Option<Duration>) {
        let from = self.current.swap(to, Ordering::Relaxed);
        let target = &self.hosts[to];
        for (pool, shape) in self.pools.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            pool.set_connect_options(shape(target.clone()));
        }
        let ms = (self.epoch.born.elapsed().as_millis() as u64).max(1);
        self.epoch.repointed_ms.store(ms, Ordering::Relaxed);
        if from != to {
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            from = %host_of(&self.hosts[from]),
            to = %host_of(target),
            searched_ms = searched.map_or(0, |d| d.as_millis() as u64),
            "following the primary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::split_hosts;

    #[test]
    fn a_host_list_splits_into_one_url_per_host() {
        let urls = split_hosts(
            "postgres://u:p%40w@10.0.0.1:5432,db2.internal:5433/shop?sslmode=require&target_session_attrs=read-write",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            urls,
            [
                "postgres://u:p%40w@10.0.0.1:5432/shop?sslmode=require",
                "postgres://u:p%40w@db2.internal:5433/shop?sslmode=require",
            ]
        );
        assert_eq!(
            split_hosts("postgres://a,b/db").unwrap().unwrap(),
            ["postgres://a/db", "postgres://b/db"]
        );
        assert_eq!(
            split_hosts("postgresql://u@h/db?target_session_attrs=primary").unwrap(),
            Some(vec!["postgresql://u@h/db".to_string()])
        );
    }

    #[test]
    fn one_host_is_not_followed_and_a_read_only_target_is_refused() {
        assert_eq!(
            split_hosts("postgres://u:p@h:5432/db?sslmode=disable").unwrap(),
            None
        );
        assert!(split_hosts("postgres://u@a,b/db?target_session_attrs=standby").is_err());
        assert!(split_hosts("postgres://u@a,,b/db").is_err());
        assert!(split_hosts("host=a dbname=b").is_err());
    }
}
