//! Scratch directories for throwaway clusters.

use std::fs;
use std::path::{Path, PathBuf};

/// A new scratch directory `<tmp>/<prefix>-<pid>-<n>` for a throwaway cluster
/// (tests, the stress harness). Throwaway clusters die with their process
/// (parent-death signal) but their directories stay behind; this first
/// removes the ones with `prefix` whose owning process is gone. The owner is
/// recorded in `owner.pid`; a directory without one is being set up and is
/// left alone.
pub fn scratch_dir(prefix: &str) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let tmp = std::env::temp_dir();
    if let Ok(entries) = fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name();
            let is_ours = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .is_some_and(|rest| rest.starts_with('-'));
            if !is_ours {
                continue;
            }
            let owner = fs::read_to_string(e.path().join("owner.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if owner.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let pid = std::process::id();
    let dir = tmp.join(format!(
        "{prefix}-{pid}-{}",
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("owner.pid"), pid.to_string())?;
    Ok(dir)
}
