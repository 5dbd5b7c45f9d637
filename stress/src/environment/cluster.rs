//! Faults on the private cluster, for `--chaos`: a fast restart, and a crash
//! (SIGKILL of the postmaster) followed by a start, which runs crash
//! recovery. Both keep the data directory, the port and the socket directory,
//! so the servers' `DATABASE_URL` stays right.
//!
//! `pg_ctl restart` does both jobs: it stops a running postmaster (fast mode:
//! open transactions are rolled back) and then starts one with the options
//! the first was started with, which PostgreSQL keeps in `postmaster.opts`.
//! After a crash it finds the old postmaster gone and just starts. The new
//! postmaster is pg_ctl's child, not the launcher's, so it would outlive this
//! process: [`ClusterControl::stop_if_restarted`] stops it at shutdown, and
//! `Drop` does as a last resort.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What it takes to restart the private cluster in place.
pub struct ClusterControl {
    pg_ctl: PathBuf,
    pgdata: PathBuf,
    /// The restarted postmaster's output (pg_ctl's own too).
    log: PathBuf,
    /// The `postgres` user's (uid, gid) when this process is root.
    run_as: Option<(u32, u32)>,
    /// Set once a postmaster was started here: it must be stopped here.
    restarted: AtomicBool,
}

impl ClusterControl {
    /// Control over the cluster whose launcher directory is `data_dir` (the
    /// cluster itself is in its `pg` subdirectory).
    pub fn new(data_dir: &Path) -> anyhow::Result<ClusterControl> {
        let bin = flashsale::embedded_pg::find_bin_dir(
            std::env::var_os("PG_BIN_DIR").map(PathBuf::from).as_deref(),
        )?;
        let pg_ctl = bin.join("pg_ctl");
        anyhow::ensure!(pg_ctl.is_file(), "no pg_ctl beside {}", bin.display());
        Ok(ClusterControl {
            pg_ctl,
            pgdata: data_dir.join("pg"),
            log: data_dir.join("postgres-restarted.log"),
            run_as: postgres_user()?,
            restarted: AtomicBool::new(false),
        })
    }

    /// `pg_ctl restart -m fast`, waiting until the new server is ready.
    /// Blocking.
    pub fn fast_restart(&self) -> anyhow::Result<()> {
        self.restarted.store(true, Ordering::SeqCst);
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"])
    }

    /// SIGKILL to the postmaster, then a start (crash recovery), waiting until
    /// the server is ready. Blocking.
    pub fn crash_and_start(&self) -> anyhow::Result<()> {
        let pid = self.postmaster_pid()?;
        // SAFETY: kill(2) on the pid the cluster's own lock file names.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            bail!(
                "cannot SIGKILL the postmaster {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        self.restarted.store(true, Ordering::SeqCst);
        // Until the launcher's keeper thread has reaped it, the pid looks
        // alive, and pg_ctl would wait for it to shut down.
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: kill(2) with signal 0 only asks whether the pid exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            if Instant::now() > deadline {
                bail!("the postmaster {pid} outlived SIGKILL by 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The backends the postmaster leaves behind notice its death and exit;
        // until the last has, they hold the shared memory and a new postmaster
        // refuses to start. So the start is tried again until it succeeds.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.pg_ctl(&["restart", "-w", "-t", "60"]) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops a postmaster started by a restart here (fast, waiting). Blocking;
    /// harmless when none was.
    pub fn stop_if_restarted(&self) {
        if self.restarted.swap(false, Ordering::SeqCst) {
            let _ = self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"]);
        }
    }

    /// The files the cluster's servers have logged to.
    pub fn logs(&self) -> [PathBuf; 2] {
        let launcher = self
            .log
            .parent()
            .map(|d| d.join("postgres.log"))
            .unwrap_or_default();
        [launcher, self.log.clone()]
    }

    fn postmaster_pid(&self) -> anyhow::Result<i32> {
        let file = self.pgdata.join("postmaster.pid");
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("{} names no pid", file.display()))
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        // Opened by this process, so the postgres user needs no right to the
        // directory; owner only, as the launcher's log.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.pg_ctl);
        cmd.args(args)
            .arg("-D")
            .arg(&self.pgdata)
            .current_dir(&self.pgdata)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let status = cmd.status().context("running pg_ctl")?;
        if !status.success() {
            bail!(
                "pg_ctl {} failed ({status}); see {}",
                args.join(" "),
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for ClusterControl {
    fn drop(&mut self) {
        self.stop_if_restarted();
    }
}

/// PostgreSQL refuses to run as root; the launcher then runs the cluster as
/// `postgres`, and so must pg_ctl.
fn postgres_user() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam returns null or a pointer into static storage, read at
    // once, before another call could overwrite it.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if pw.is_null() {
        bail!("running as root, but there is no postgres user to run pg_ctl as");
    }
    // SAFETY: pw is non-null and points at a valid passwd record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}
