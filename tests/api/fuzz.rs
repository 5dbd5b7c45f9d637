//! Schemathesis against `/openapi.json` of a real server, signed in as an
//! admin: every answer must be a documented status with a documented content
//! type and a body that matches its schema, and none may be a 5xx.
//!
//! Schemathesis comes from PyPI, pinned in `scripts/test`, which installs it
//! into `target/schemathesis` (a virtualenv). Missing it is a failure that
//! says how to install it, not a skip: CI always has it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flashsale::auth::Role;
use serde_json::json;
use tokio::process::Command;

use crate::helpers::{body, spawn_app, TestApp};

/// Examples per operation and phase: with 46 operations, the coverage and
/// fuzzing phases generate about 2,500 cases in all.
const MAX_EXAMPLES: &str = "30";
/// The fewest cases a run may generate: fewer means the spec lost operations.
const MIN_CASES: u64 = 1_000;
/// A bound on each run (the main one takes about 35 s on two cores).
const TIME_LIMIT: Duration = Duration::from_secs(480);

/// The checks every answer is held to.
const CHECKS: &str = "not_a_server_error,status_code_conformance,\
                      content_type_conformance,response_schema_conformance,\
                      unsupported_method,allow_header_conformance";

/// The schemathesis executable: `FLASHSALE_SCHEMATHESIS`, else the
/// virtualenv `scripts/test` makes, else `schemathesis` on PATH.
fn schemathesis() -> PathBuf {
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/schemathesis");
    let candidates: Vec<PathBuf> = std::env::var_os("FLASHSALE_SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("schemathesis")])
        .collect();
    for c in &candidates {
        let ok = std::process::Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "the fuzz test needs schemathesis: run scripts/test, which installs the pinned version \
         into target/schemathesis, or `python3 -m venv target/schemathesis && \
         target/schemathesis/bin/pip install schemathesis==<the version in scripts/test>`, \
         or point FLASHSALE_SCHEMATHESIS at one (tried {candidates:?})"
    );
}

/// Data for the fuzzer to find: a product, a sale confirming at once and one
/// holding for payment, a customer's order in it with a payment opened.
async fn seed(app: &TestApp) {
    let sale = app.active_sale(50).await;
    let product = app.create_product(1500).await;
    let now = app.db_now().await;
    let admin = app.create_user(Role::Admin).await;
    let (status, hold_sale) = body(
        app.post(
            "/api/v1/sales",
            Some(&admin.token),
            &json!({
                "product_id": product, "starts_at": now - chrono::Duration::seconds(60),
                "ends_at": now + chrono::Duration::hours(1), "stock": 20, "hold_secs": 600
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{hold_sale}");
    let customer = app.create_user(Role::Customer).await;
    app.buy(sale, &customer, 1).await;
    let order = app
        .buy(hold_sale["id"].as_i64().expect("id"), &customer, 1)
        .await;
    let path = format!("/api/v1/orders/{}/pay", order["id"]);
    let (status, payment) = body(app.post(&path, Some(&customer.token), &json!({})).await).await;
    assert_eq!(status, 201, "{payment}");
}

/// Runs schemathesis with `filter` (its operation filter arguments); returns
/// whether it passed, its output, and how many cases it generated.
async fn run(app: &TestApp, token: &str, filter: &[&str]) -> (bool, String, u64) {
    let exe = schemathesis();
    // Its working directory, for anything it may write; gone afterwards.
    let dir = flashsale::embedded_pg::scratch_dir("flashsale-fuzz").expect("a scratch directory");
    let mut cmd = Command::new(&exe);
    cmd.current_dir(&dir)
        .arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        // Derandomized: the same cases on every run, so CI is reproducible.
        .arg("--generation-deterministic")
        // One worker: Debian's Python 3.11.2 can fail in hypothesis's
        // `ast.parse` when two threads draw at once (a CPython bug).
        .args(["--workers", "1", "--request-timeout", "10"])
        .args([
            "--no-color",
            "--output-truncate",
            "false",
            "--continue-on-failure",
        ])
        .args(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start schemathesis");
    let out = tokio::time::timeout(TIME_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {TIME_LIMIT:?}"))
        .expect("schemathesis output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = generated(&text);
    std::fs::remove_dir_all(&dir).ok();
    (out.status.success(), text, cases)
}

/// The "N generated" count of schemathesis's summary (0 if absent).
fn generated(output: &str) -> u64 {
    output
        .lines()
        .filter(|l| l.contains("generated"))
        .filter_map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[1].starts_with("generated"))
                .and_then(|w| w[0].parse().ok())
        })
        .next_back()
        .unwrap_or(0)
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_answer_outside_the_spec() {
    // Arrange
    let app = spawn_app().await;
    seed(&app).await;
    let admin = app.create_user(Role::Admin).await;
    let started = Instant::now();

    // Act: everything but logout (which would end the admin's token) and the
    // event stream (which never ends by itself), then logout on its own.
    let (ok, output, cases) = run(
        &app,
        &admin.token,
        &[
            "--exclude-path",
            "/api/v1/auth/logout",
            "--exclude-path",
            "/api/v1/sales/{id}/events",
        ],
    )
    .await;
    let (logout_ok, logout_output, logout_cases) = run(
        &app,
        &admin.token,
        &["--include-path", "/api/v1/auth/logout"],
    )
    .await;

    // Assert
    eprintln!(
        "schemathesis: {} cases in {:.0?}",
        cases + logout_cases,
        started.elapsed()
    );
    assert!(ok, "schemathesis found problems:\n{output}");
    assert!(logout_ok, "schemathesis found problems:\n{logout_output}");
    assert!(
        cases + logout_cases >= MIN_CASES,
        "only {} cases generated:\n{output}",
        cases + logout_cases
    );
}
