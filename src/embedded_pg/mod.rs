//! The private PostgreSQL launcher.
//!
//! Used by `flashsale serve` when no `DATABASE_URL` is set, by the test suite,
//! and by the stress harness. It finds the server binaries installed on the
//! machine, creates a cluster in a directory of its own on first use
//! (password-protected, listening on a unix socket and a free loopback port),
//! starts `postgres` as a child process and stops it again.
//!
//! PostgreSQL refuses to run as root, so when this process is root the cluster
//! runs as the `postgres` system user (which the server package creates). The
//! child is bound to the thread that started it with `PR_SET_PDEATHSIG`, so a
//! crashed parent never leaves a server behind.

mod bouncer;
mod cluster;
mod scratch;
mod standby;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use cluster::{check_reachable, chown, init_cluster, unprivileged_user, RunAs};

pub use bouncer::{PgBouncer, POOL_ROLE};
pub use cluster::find_bin_dir;
pub use scratch::scratch_dir;
pub use standby::make_synchronous;

/// What went wrong starting the private cluster. The messages are meant for
/// the person who ran the command.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and postgres in PG_BIN_DIR, on PATH and under /usr/lib/postgresql/*/bin): install the PostgreSQL server package (Debian: apt-get install postgresql) or set DATABASE_URL to a running server"
    )]
    NoBinaries,
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` system user to run it as: install the PostgreSQL server package (it creates that user), run flashsale as an ordinary user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error(
        "the `postgres` user cannot reach {0}: one of its parent directories is not searchable by others; set FLASHSALE_DATA_DIR to a directory it can reach (e.g. /var/lib/flashsale)"
    )]
    Unreachable(PathBuf),
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Directory holding everything the cluster owns.
    pub data_dir: PathBuf,
    /// Where `initdb` and `postgres` live; searched when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Trade durability for speed (fsync off): for throwaway test clusters.
    pub ephemeral: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
}

/// A running private PostgreSQL server. Stop it with [`EmbeddedPg::stop`];
/// if this process dies first, the server is told to shut down by the kernel.
pub struct EmbeddedPg {
    data_dir: PathBuf,
    socket_dir: Option<PathBuf>,
    port: u16,
    password: String,
    pid: i32,
    exited: Mutex<Option<mpsc::Receiver<()>>>,
}

/// The database role the embedded cluster is created with.
pub const SUPERUSER: &str = "flashsale";

impl EmbeddedPg {
    /// Creates the cluster if the data directory holds none yet, starts the
    /// server and waits until it accepts connections. Blocking: call it from
    /// `spawn_blocking` in async code.
    pub fn start(opts: &EmbeddedOptions) -> Result<EmbeddedPg, EmbeddedError> {
        let Dirs {
            bin,
            run_as,
            data_dir,
            pgdata,
            run_dir,
        } = Dirs::make(opts)?;
        let password_file = data_dir.join("pg-password");
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(&bin, &pgdata, &password_file, run_as.as_ref())?;
        }
        let password = fs::read_to_string(&password_file)
            .map_err(io(format!("reading {}", password_file.display())))?
            .trim()
            .to_string();

        launch(&bin, data_dir, run_dir, password, run_as, opts)
    }

    fn wait_ready(&self, pgdata: &Path, log_path: &Path) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // postmaster.pid's 8th line is the server status; "ready" means it
            // accepts connections (this is what pg_ctl waits for).
            if let Ok(pidfile) = fs::read_to_string(pgdata.join("postmaster.pid")) {
                let lines: Vec<&str> = pidfile.lines().collect();
                if lines.first().map(|l| l.trim()) == Some(self.pid.to_string().as_str())
                    && lines.get(7).map(|l| l.trim()) == Some("ready")
                {
                    return Ok(());
                }
            }
            let gone = match self.exited.lock() {
                Ok(guard) => guard.as_ref().is_some_and(|rx| rx.try_recv().is_ok()),
                Err(_) => false,
            };
            if gone || Instant::now() > deadline {
                if !gone {
                    self.stop();
                }
                return Err(EmbeddedError::Failed(format!(
                    "PostgreSQL did not start; the end of {} says:\n{}",
                    log_path.display(),
                    tail(log_path, 15)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Connection options for `database` on this server.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        let opts = PgConnectOptions::new()
            .username(SUPERUSER)
            .password(&self.password)
            .database(database)
            .port(self.port);
        match &self.socket_dir {
            Some(dir) => opts.socket(dir),
            None => opts.host("127.0.0.1"),
        }
    }

    /// A `postgres://` URL for `database` over loopback TCP (for tools such as
    /// psql and pgbench).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory that holds the cluster.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Fast shutdown (open transactions are rolled back), waiting up to 30 s.
    /// Calling it twice is harmless.
    pub fn stop(&self) {
        let Ok(mut guard) = self.exited.lock() else {
            return;
        };
        let Some(rx) = guard.take() else { return };
        // SAFETY: kill(2) with a pid we started; no memory is touched.
        unsafe {
            libc::kill(self.pid, libc::SIGINT);
        }
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            // SAFETY: as above.
            unsafe {
                libc::kill(self.pid, libc::SIGQUIT);
            }
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// Where a cluster lives and who runs it.
struct Dirs {
    bin: PathBuf,
    run_as: Option<RunAs>,
    /// `opts.data_dir`, made and resolved.
    data_dir: PathBuf,
    /// The cluster itself: `data_dir/pg`.
    pgdata: PathBuf,
    /// The socket directory: `data_dir/run`.
    run_dir: PathBuf,
}

impl Dirs {
    /// Finds the binaries and the user, and makes the directories, which
    /// that user must reach.
    fn make(opts: &EmbeddedOptions) -> Result<Dirs, EmbeddedError> {
        let bin = find_bin_dir(opts.bin_dir.as_deref())?;
        let run_as = unprivileged_user()?;
        let data_dir = &opts.data_dir;
        fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("resolving {}", data_dir.display())))?;
        let pgdata = data_dir.join("pg");
        let run_dir = data_dir.join("run");
        fs::create_dir_all(&run_dir).map_err(io("creating the socket directory"))?;
        if let Some(user) = &run_as {
            check_reachable(&data_dir)?;
            chown(&run_dir, user)?;
        }
        Ok(Dirs {
            bin,
            run_as,
            data_dir,
            pgdata,
            run_dir,
        })
    }
}

/// Starts `postgres` on the cluster in `data_dir/pg` and waits until it
/// accepts connections.
fn launch(
    bin: &Path,
    data_dir: PathBuf,
    run_dir: PathBuf,
    password: String,
    run_as: Option<RunAs>,
    opts: &EmbeddedOptions,
) -> Result<EmbeddedPg, EmbeddedError> {
    let pgdata = data_dir.join("pg");
    // A unix socket path is limited to ~107 bytes; fall back to TCP only.
    let socket_ok = run_dir.as_os_str().len() + "/.s.PGSQL.65535".len() < 100;
    let port = free_port()?;
    let log_path = data_dir.join("postgres.log");
    // The log may quote statements and their values: owner only.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    fs::set_permissions(&log_path, fs::Permissions::from_mode(0o600))
        .map_err(io(format!("restricting {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io("opening the server log"))?;

    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&pgdata)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(if socket_ok {
            run_dir.as_os_str()
        } else {
            "".as_ref()
        })
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("max_connections={}", opts.max_connections)])
        .args(["-c", "timezone=UTC"])
        .args(["-c", "log_min_messages=warning"]);
    if opts.ephemeral {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
    let spawn = spawn_bound(cmd, run_as.as_ref());
    let (pid, exited) = spawn?;

    let pg = EmbeddedPg {
        data_dir: data_dir.clone(),
        socket_dir: socket_ok.then_some(run_dir),
        port,
        password,
        pid,
        exited: Mutex::new(Some(exited)),
    };
    pg.wait_ready(&pgdata, &log_path)?;
    Ok(pg)
}

impl Drop for EmbeddedPg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd` from a thread that lives as long as the child, with the
/// parent-death signal set, so the server goes down with this process.
/// Returns the child's pid and a channel that yields once it has exited.
fn spawn_bound(
    mut cmd: Command,
    run_as: Option<&RunAs>,
) -> Result<(i32, mpsc::Receiver<()>), EmbeddedError> {
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing. It
    // runs after the uid change, so the setting survives it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (pid_tx, pid_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("embedded-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id() as i32));
                let _ = child.wait();
                let _ = exit_tx.send(());
            }
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
        })
        .map_err(io("starting the postgres keeper thread"))?;
    let pid = pid_rx
        .recv()
        .map_err(|_| EmbeddedError::Failed("the postgres keeper thread died".into()))?
        .map_err(io("starting postgres"))?;
    Ok((pid, exit_rx))
}

fn free_port() -> Result<u16, EmbeddedError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
