//! A real SMTP server for the email tests: `tests/smtp/mailbox.py` (aiosmtpd)
//! in a child process on a loopback port, and what it received.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One message the server accepted.
#[derive(Clone, Debug, Deserialize)]
pub struct Received {
    /// Arrival time, seconds since the epoch (the server's clock).
    pub at: f64,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    /// The decoded plain-text part.
    pub text: String,
    pub has_html: bool,
}

pub struct Mailbox {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

/// A Python that can run aiosmtpd: `FLASHSALE_TEST_PYTHON`, else Debian's
/// `/usr/bin/python3` (package python3-aiosmtpd), else `python3` on PATH.
fn python() -> String {
    let candidates: Vec<String> = std::env::var("FLASHSALE_TEST_PYTHON")
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()])
        .collect();
    for p in &candidates {
        let ok = std::process::Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "the email tests need a real SMTP server: install Debian's python3-aiosmtpd \
         (apt-get install python3-aiosmtpd) or `pip install aiosmtpd` (tried {candidates:?})"
    );
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Mailbox {
    pub async fn start() -> Mailbox {
        Mailbox::start_on(free_port()).await
    }

    /// Starts the server on `port` and waits until it listens.
    pub async fn start_on(port: u16) -> Mailbox {
        let dir = std::env::temp_dir().join(format!("flashsale-mailbox-{}", uuid::Uuid::new_v4()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/mailbox.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .expect("read its output");
        assert_eq!(
            ready.as_deref(),
            Some("ready"),
            "the SMTP server did not start"
        );
        Mailbox { port, dir, child }
    }

    /// `smtp://127.0.0.1:port` (plain: a local server).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Everything received so far, in arrival order. A line the server is
    /// still writing (no newline yet) is left for the next read.
    pub fn messages(&self) -> Vec<Received> {
        let log = std::fs::read_to_string(self.dir.join("log.jsonl")).unwrap_or_default();
        let complete = log.rfind('\n').map_or("", |end| &log[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a log line"))
            .collect()
    }

    /// Waits until at least `n` messages match `keep`, and returns them.
    pub async fn wait_for(
        &self,
        n: usize,
        within: Duration,
        keep: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got: Vec<Received> = self.messages().into_iter().filter(|m| keep(m)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < within,
                "{} of {n} messages arrived within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
