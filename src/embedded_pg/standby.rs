//! A hot standby of a private cluster, streaming from it: made by
//! `pg_basebackup -R` and started read-only. For the test suite and the
//! stress harness (a replica for reads).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::cluster::chown;
use super::{io, launch, Dirs, EmbeddedError, EmbeddedOptions, EmbeddedPg, SUPERUSER};

impl EmbeddedPg {
    /// Copies `primary` into `opts.data_dir` (which must hold no cluster
    /// yet) and starts the copy as a hot standby that streams from it.
    /// Blocking, like [`EmbeddedPg::start`].
    pub fn start_standby(
        primary: &EmbeddedPg,
        opts: &EmbeddedOptions,
    ) -> Result<EmbeddedPg, EmbeddedError> {
        let Dirs {
            bin,
            run_as,
            data_dir,
            pgdata,
            run_dir,
        } = Dirs::make(opts)?;
        // pg_basebackup, run as that user, makes `pgdata` inside.
        if let Some(user) = &run_as {
            chown(&data_dir, user)?;
        }
        // -R writes standby.signal and the primary's connection, password
        // included, into postgresql.auto.conf.
        let conninfo = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={}",
            primary.port, primary.password
        );
        // Beside `postgres`, or beside what a symlink to it points at.
        let basebackup = [
            bin.join("postgres"),
            bin.join("postgres").canonicalize().unwrap_or_default(),
        ]
        .iter()
        .filter_map(|p| p.parent().map(|d| d.join("pg_basebackup")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            EmbeddedError::Failed(format!("no pg_basebackup beside {}", bin.display()))
        })?;
        let mut cmd = Command::new(basebackup);
        cmd.arg("-D")
            .arg(&pgdata)
            .args(["-R", "-X", "stream", "-c", "fast", "-d", &conninfo])
            .stdin(Stdio::null());
        if let Some(user) = &run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &data_dir);
        }
        let out = cmd.output().map_err(io("running pg_basebackup"))?;
        if !out.status.success() {
            return Err(EmbeddedError::Failed(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let password_file = data_dir.join("pg-password");
        fs::write(&password_file, &primary.password).map_err(io("saving the password"))?;
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
            .map_err(io("restricting the password file"))?;
        launch(
            &bin,
            data_dir,
            run_dir,
            primary.password.clone(),
            run_as,
            opts,
        )
    }
}
