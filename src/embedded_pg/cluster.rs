//! The cluster on disk: finding the server binaries, the unprivileged user
//! it runs as under root, and creating it with `initdb`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::distributions::Alphanumeric;
use rand::Rng;

use super::{io, EmbeddedError, SUPERUSER};

/// The system user the cluster runs as when this process is root.
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// Looks for a directory holding both `initdb` and `postgres`.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = explicit {
        return if has_both(d) {
            Ok(d.to_path_buf())
        } else {
            Err(EmbeddedError::Failed(format!(
                "PG_BIN_DIR={} does not hold initdb and postgres",
                d.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Ok(d);
        }
    }
    // Debian and Ubuntu keep the server binaries off PATH; take the newest.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, d)| d)
        .ok_or(EmbeddedError::NoBinaries)
}

pub(super) fn unprivileged_user() -> Result<Option<RunAs>, EmbeddedError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer into static storage or null; the
    // fields are read at once, before any other call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(EmbeddedError::NoUnprivilegedUser);
    }
    // SAFETY: pw is non-null and points at a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

pub(super) fn chown(path: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(io(format!(
        "handing {} to the postgres user",
        path.display()
    )))
}

/// Every ancestor of `dir` must be searchable by the unprivileged user.
pub(super) fn check_reachable(dir: &Path) -> Result<(), EmbeddedError> {
    for anc in dir.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(anc) {
            if meta.permissions().mode() & 0o001 == 0 {
                return Err(EmbeddedError::Unreachable(dir.to_path_buf()));
            }
        }
    }
    Ok(())
}

pub(super) fn init_cluster(
    bin: &Path,
    pgdata: &Path,
    password_file: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), EmbeddedError> {
    // A leftover of an interrupted initdb is not a cluster: start over.
    if pgdata.exists() {
        fs::remove_dir_all(pgdata).map_err(io(format!("clearing {}", pgdata.display())))?;
    }
    fs::create_dir_all(pgdata).map_err(io(format!("creating {}", pgdata.display())))?;
    fs::set_permissions(pgdata, fs::Permissions::from_mode(0o700))
        .map_err(io("restricting the cluster directory"))?;
    if let Some(user) = run_as {
        chown(pgdata, user)?;
    }

    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    // initdb reads the superuser password from a file it must be able to read.
    let pwfile = pgdata
        .parent()
        .unwrap_or(pgdata)
        .join(format!(".initdb-pw-{}", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&pwfile)
            .map_err(io("writing the initdb password file"))?;
        f.write_all(password.as_bytes())
            .map_err(io("writing the initdb password file"))?;
    }
    if let Some(user) = run_as {
        chown(&pwfile, user)?;
    }
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(pgdata)
        .args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).env("HOME", pgdata);
    }
    let out = cmd.output().map_err(io("running initdb"));
    let _ = fs::remove_file(&pwfile);
    let out = out?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(pgdata);
        return Err(EmbeddedError::Failed(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(password_file)
        .map_err(io("saving the cluster password"))?;
    f.write_all(password.as_bytes())
        .map_err(io("saving the cluster password"))?;
    Ok(())
}
