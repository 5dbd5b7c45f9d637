//! The parser, the declarations, and the README table they generate.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::vars::{self, Allowed, Unset, VARS};
use super::*;

fn cfg(vars: &[(&str, &str)]) -> Result<Config, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn embedded_mode_needs_no_configuration() {
    let c = cfg(&[]).expect("defaults are valid");
    assert!(matches!(c.database, DatabaseSource::Embedded { .. }));
    assert_eq!(c.port, 8080);
    assert_eq!(c.app.bcrypt_cost, 12);
}

#[test]
fn a_pooler_and_a_listen_url_belong_to_the_operators_database() {
    let err = cfg(&[("DATABASE_POOLER", "transaction")]).unwrap_err();
    assert!(err.contains("set DATABASE_URL too"), "{err}");
    let err = cfg(&[
        ("DATABASE_URL", "postgres://x@pooler/db"),
        ("DATABASE_POOLER", "session"),
    ])
    .unwrap_err();
    assert!(err.contains("DATABASE_POOLER"), "{err}");
    let c = cfg(&[
        ("DATABASE_URL", "postgres://x@pooler:6432/db"),
        ("DATABASE_POOLER", "transaction"),
        ("DATABASE_LISTEN_URL", "postgres://x@primary:5432/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("PAYMENT_WEBHOOK_SECRET", WEBHOOK),
    ])
    .expect("valid");
    let DatabaseSource::Url(urls) = c.database else {
        panic!("not the operator's database")
    };
    assert!(urls.pooled);
    assert_eq!(
        urls.listen
            .map(|u| u.expose_secret().to_string())
            .as_deref(),
        Some("postgres://x@primary:5432/db")
    );
}

#[test]
fn a_real_database_requires_a_strong_jwt_secret() {
    let err = cfg(&[("DATABASE_URL", "postgres://x@localhost/db")]).unwrap_err();
    assert!(err.contains("JWT_SECRET is required"), "{err}");
    let err = cfg(&[
        ("DATABASE_URL", "postgres://x@localhost/db"),
        ("JWT_SECRET", "short"),
    ])
    .unwrap_err();
    assert!(err.contains("at least 32 bytes"), "{err}");
    let ok = cfg(&[
        ("DATABASE_URL", "postgres://x@localhost/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("PAYMENT_WEBHOOK_SECRET", WEBHOOK),
    ]);
    assert!(ok.is_ok());
}

/// A PAYMENT_WEBHOOK_SECRET that passes.
const WEBHOOK: &str = "whsec-0123456789abcdef0123456789abcdef";

#[test]
fn a_real_database_requires_a_strong_webhook_secret() {
    let jwt = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");
    let err = cfg(&[("DATABASE_URL", "postgres://x@localhost/db"), jwt]).unwrap_err();
    assert!(err.contains("PAYMENT_WEBHOOK_SECRET is required"), "{err}");
    let err = cfg(&[
        ("DATABASE_URL", "postgres://x@localhost/db"),
        jwt,
        ("PAYMENT_WEBHOOK_SECRET", "short"),
    ])
    .unwrap_err();
    assert!(err.contains("PAYMENT_WEBHOOK_SECRET"), "{err}");
    assert!(!err.contains("short"), "a secret is never repeated: {err}");
    // Embedded mode generates one.
    assert!(cfg(&[]).unwrap().payment_webhook_secret.is_none());
}

#[test]
fn every_bad_variable_is_reported_at_once() {
    let err = cfg(&[
        ("PORT", "http"),
        ("BCRYPT_COST", "3"),
        ("LOG_FORMAT", "xml"),
    ])
    .unwrap_err();
    assert!(err.contains("PORT"), "{err}");
    assert!(err.contains("BCRYPT_COST"), "{err}");
    assert!(err.contains("LOG_FORMAT"), "{err}");
}

#[test]
fn email_goes_to_files_when_embedded_and_waits_without_a_transport() {
    let c = cfg(&[("FLASHSALE_DATA_DIR", "/srv/fs")]).expect("valid");
    assert_eq!(
        c.app.email.transport,
        MailTransport::Files(PathBuf::from("/srv/fs/mail"))
    );
    assert!(c.app.email.jobs.is_some());
    let c = cfg(&[
        ("DATABASE_URL", "postgres://x@localhost/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("PAYMENT_WEBHOOK_SECRET", WEBHOOK),
    ])
    .expect("valid");
    assert_eq!(c.app.email.transport, MailTransport::Off);
}

#[test]
fn email_settings_are_checked() {
    let c = cfg(&[
        ("SMTP_URL", "smtps://me:secret@mail.example.com"),
        ("JOB_DIGEST_AT", "05:30"),
        ("JOBS_ENABLED", "false"),
    ])
    .expect("valid");
    assert!(matches!(c.app.email.transport, MailTransport::Smtp(_)));
    assert!(c.app.email.jobs.is_none());
    let err = cfg(&[
        ("SMTP_URL", "http://mail.example.com"),
        ("JOB_ANNOUNCE_AT", "9am"),
        ("EMAIL_RATE_PER_SEC", "0"),
        ("EMAIL_FROM", "nobody"),
        ("REQUIRE_VERIFIED_EMAIL", "maybe"),
    ])
    .unwrap_err();
    for key in [
        "SMTP_URL",
        "JOB_ANNOUNCE_AT",
        "EMAIL_RATE_PER_SEC",
        "EMAIL_FROM",
        "REQUIRE_VERIFIED_EMAIL",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    assert!(!err.contains("secret"));
}

#[test]
fn ranges_in_messages_are_the_declared_ones() {
    let err = cfg(&[("BCRYPT_COST", "3"), ("EMAIL_WORKERS", "0")]).unwrap_err();
    assert!(err.contains("from 4 to 31"), "{err}");
    assert!(err.contains("from 1 to 256"), "{err}");
}

#[test]
fn defaults_are_the_declared_ones() {
    let parsed = cfg(&[
        ("DATABASE_URL", "postgres://x@localhost/db"),
        ("JWT_SECRET", &"k".repeat(32)),
        ("PAYMENT_WEBHOOK_SECRET", WEBHOOK),
    ])
    .expect("valid");
    let mut app = parsed.app;
    app.email.jobs = None;
    assert_eq!(format!("{app:?}"), format!("{:?}", AppSettings::default()));
    assert_eq!(app.bcrypt_cost, 12);
    assert_eq!(app.refresh_token_ttl, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        JobTimes::default().report_at,
        NaiveTime::from_hms_opt(7, 0, 0).unwrap()
    );
}

#[test]
fn every_declared_variable_is_read_and_every_read_one_declared() {
    let asked = RefCell::new(BTreeSet::new());
    Config::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    })
    .expect("reading only declared variables");
    let declared: BTreeSet<String> = VARS
        .iter()
        .map(|v| v.name.to_string())
        // The log subscriber reads it.
        .filter(|n| n != "RUST_LOG")
        .collect();
    assert_eq!(asked.into_inner(), declared);
}

#[test]
fn declarations_are_well_formed() {
    let mut names = BTreeSet::new();
    for v in VARS {
        assert!(names.insert(v.name), "{} is declared twice", v.name);
        let cells = [v.doc.to_string(), v.unset.describe(), v.allowed.describe()];
        assert!(
            cells.iter().all(|c| !c.contains('|')),
            "{}: `|` in a cell",
            v.name
        );
        if let (Unset::Value(d), Allowed::Int { min, max }) = (&v.unset, &v.allowed) {
            let d: u64 = d.parse().expect("a numeric default");
            assert!(
                (*min..=*max).contains(&d),
                "{}: default out of range",
                v.name
            );
        }
    }
}

#[test]
fn debug_output_shows_no_secret() {
    let c = cfg(&[
        ("DATABASE_URL", "postgres://app:db-password-1@localhost/db"),
        ("JWT_SECRET", "jwt-secret-0123456789abcdef012345"),
        (
            "PAYMENT_WEBHOOK_SECRET",
            "webhook-secret-0123456789abcdef0123",
        ),
        ("SMTP_URL", "smtps://me:smtp-password-2@mail.example.com"),
    ])
    .expect("valid");
    let shown = format!("{c:?}");
    for secret in [
        "db-password-1",
        "jwt-secret-0123456789abcdef012345",
        "webhook-secret-0123456789abcdef0123",
        "smtp-password-2",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let bad = cfg(&[
        ("DATABASE_URL", "mysql://app:db-password-1@localhost/db"),
        ("JWT_SECRET", "short-secret-3"),
    ])
    .unwrap_err();
    assert!(
        !bad.contains("db-password-1") && !bad.contains("short-secret-3"),
        "{bad}"
    );
}

/// The configuration table of README.md: the table rows of its
/// `## Configuration` section.
fn readme_table(readme: &str) -> String {
    let section = readme
        .split_once("\n## Configuration\n")
        .map_or("", |(_, rest)| rest);
    let mut table = String::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
    {
        table.push_str(line);
        table.push('\n');
    }
    table
}

#[test]
fn the_readme_documents_the_declared_variables() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let want = vars::markdown_table();
    assert!(
        readme_table(&readme) == want,
        "the configuration table of README.md differs from src/config/vars.rs; \
         put this table in its place:\n\n{want}"
    );
}
