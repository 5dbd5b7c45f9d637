//! Email end to end: the outbox commits with its event, senders deliver to a
//! real SMTP server (aiosmtpd, started per test), under the rate limit, once
//! per job period across instances, through an outage and a killed sender.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use flashsale::auth::Role;
use flashsale::config::{AppSettings, JobTimes, MailTransport, PurchaseMode, Rate};
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{
    assert_error, body, jwt_secret, spawn_app, spawn_app_with, TestApp, PASSWORD,
};
use crate::mailbox::{free_port, Mailbox, Received};

const WAIT: Duration = Duration::from_secs(60);

/// Sends through `url` with quick polling and retries.
fn smtp(url: String) -> impl FnOnce(&mut AppSettings) {
    move |s| {
        s.email.transport = MailTransport::Smtp(url.into());
        s.email.poll = Duration::from_millis(50);
        s.email.workers = 2;
        s.email.retry_base = Duration::from_millis(100);
        s.email.retry_max = Duration::from_millis(500);
    }
}

/// Waits until `sql` (a single bigint) equals `want`.
async fn wait_sql(app: &TestApp, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let got = app.scalar_i64(sql).await;
        if got == want {
            return;
        }
        assert!(start.elapsed() < WAIT, "{sql} = {got}, waited for {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn address(user: &crate::helpers::TestUser) -> String {
    format!("{}@example.test", user.username)
}

/// The first link in `text` containing `path`.
fn link(text: &str, path: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains(path))
        .unwrap_or_else(|| panic!("no {path} link in: {text}"))
        .to_string()
}

#[tokio::test]
async fn a_purchase_yields_exactly_one_confirmation_with_its_order_number() {
    let mailbox = Mailbox::start().await;
    let app = spawn_app_with(smtp(mailbox.url())).await;
    let sale = app.active_sale(10).await;
    let buyer = app.create_user(Role::Customer).await;
    let order = app.buy(sale, &buyer, 1).await;
    let number = order["number"].as_str().expect("order number");

    let to = address(&buyer);
    mailbox.wait_for(1, WAIT, |m| m.to.contains(&to)).await;
    // Once the row is marked sent, nothing more can go out for it.
    wait_sql(
        &app,
        "select count(*) from outbox where status <> 'sent'",
        0,
    )
    .await;
    let mine: Vec<Received> = mailbox
        .messages()
        .into_iter()
        .filter(|m| m.to.contains(&to))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let m = &mine[0];
    assert!(m.subject.contains(number), "{}", m.subject);
    assert!(m.text.contains(number), "{}", m.text);
    assert!(m.text.contains("Quantity:     1"), "{}", m.text);
    assert!(m.text.contains("Total:        10.00 EUR"), "{}", m.text);
    assert!(m.has_html, "a confirmation has an HTML part too");
    let id = app
        .scalar_i64("select id from outbox where kind = 'order_confirmation'")
        .await;
    assert!(
        m.message_id.starts_with(&format!("<outbox-{id}@")),
        "{}",
        m.message_id
    );
}

/// Under concurrent buyers, in both engines: every order has exactly one
/// confirmation row for its buyer, and no row exists without an order.
#[tokio::test]
async fn every_order_commits_with_exactly_one_confirmation_in_both_engines() {
    for mode in [PurchaseMode::Combined, PurchaseMode::PerPurchase] {
        let app = spawn_app_with(|s| s.purchase.mode = mode).await;
        let sale = app.active_sale(30).await;
        let buyers = app.create_customers(60).await;
        let answers = join_all(buyers.iter().map(|b| app.purchase(sale, b, Some(1)))).await;
        let created = answers.iter().filter(|r| r.status() == 201).count();
        assert_eq!(created, 30, "{mode:?}");
        let orders = app.scalar_i64("select count(*) from purchase_order").await;
        let rows = app
            .scalar_i64("select count(*) from outbox where kind = 'order_confirmation'")
            .await;
        let matched = app
            .scalar_i64(
                "select count(distinct m.id) from outbox m
                   join purchase_order o on o.id = m.order_id and o.user_id = m.user_id",
            )
            .await;
        assert_eq!((orders, rows, matched), (30, 30, 30), "{mode:?}");
    }
}

#[tokio::test]
async fn an_announcement_to_1000_customers_delivers_all_within_the_rate_limit() {
    // The default rate; the test SMTP server takes several times more.
    const RATE: u32 = 100;
    const BURST: u32 = 10;
    const WORKERS: usize = 16;
    let mailbox = Mailbox::start().await;
    let url = mailbox.url();
    let app = spawn_app_with(move |s| {
        smtp(url)(s);
        s.email.rate = Rate::new(RATE, BURST);
        s.email.workers = WORKERS;
    })
    .await;
    sqlx::query(
        "insert into app_user (username, email, password_hash, email_verified_at)
         select 'fan' || g, 'fan' || g || '@example.test', 'x', now() from generate_series(1, 1000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Not announced to: unverified addresses, opted-out customers, sellers.
    sqlx::query(
        "insert into app_user (username, email, password_hash, email_verified_at, announcements, role)
         select 'quiet' || g, 'quiet' || g || '@example.test', 'x',
                case when g <= 3 then null else now() end, g > 6,
                case when g > 6 then 'seller' else 'customer' end
           from generate_series(1, 9) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.create_product(1999).await;
    let admin = app.create_user(Role::Admin).await;

    let (status, v) = body(
        app.post(
            "/api/v1/admin/jobs/new_products/run",
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["emails"], 1000, "{v}");

    let got = mailbox
        .wait_for(1000, Duration::from_secs(120), |m| {
            m.subject.starts_with("New in the shop")
        })
        .await;
    let to: HashSet<&str> = got
        .iter()
        .flat_map(|m| m.to.iter().map(|s| s.as_str()))
        .collect();
    assert_eq!(to.len(), 1000, "every customer once");
    assert!(
        to.iter().all(|a| a.starts_with("fan")),
        "only verified, subscribed customers"
    );
    let m = &got[0];
    assert!(m.text.contains("A Book"), "{}", m.text);
    assert!(m.text.contains("/api/v1/unsubscribe?token="), "{}", m.text);

    // The limiter admits at most BURST + RATE×t sends in any t seconds;
    // arrival times can bunch by at most the sends in flight (one per worker).
    let mut at: Vec<f64> = got.iter().map(|m| m.at).collect();
    at.sort_by(f64::total_cmp);
    let bound = (RATE + BURST) as usize + WORKERS;
    for (i, start) in at.iter().enumerate() {
        let in_window = at[i..].iter().take_while(|t| **t < start + 1.0).count();
        assert!(
            in_window <= bound,
            "{in_window} emails within one second (bound {bound})"
        );
    }
    let span = at[at.len() - 1] - at[0];
    let least = (1000 - BURST - WORKERS as u32) as f64 / RATE as f64;
    assert!(
        span >= least,
        "1000 emails took {span:.2} s, less than the rate allows ({least:.2} s)"
    );
}

#[tokio::test]
async fn the_daily_digest_runs_once_across_instances_and_restarts() {
    let mailbox = Mailbox::start().await;
    // The first instance only sets up; it runs no jobs.
    let app = spawn_app_with(smtp(mailbox.url())).await;
    let mut sellers = Vec::new();
    for price in [1200, 800] {
        let seller = app.create_user(Role::Seller).await;
        let product = app.create_product_by(&seller, price).await["id"]
            .as_i64()
            .unwrap();
        let sale = app.create_sale_of(product, -60, 3600, 100, 1).await["id"]
            .as_i64()
            .unwrap();
        for buyer in app.create_customers(3).await {
            app.buy(sale, &buyer, 1).await;
        }
        sellers.push(seller);
    }
    // A seller whose products sold nothing gets no digest.
    let idle = app.create_user(Role::Seller).await;
    app.create_product_by(&idle, 500).await;
    // The orders were placed "yesterday", in a shop set up long before
    // (periods that ended before the set-up are never caught up).
    sqlx::query("update purchase_order set created_at = created_at - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("update _sqlx_migrations set installed_on = installed_on - interval '40 days'")
        .execute(&app.pool)
        .await
        .unwrap();

    // Two instances start at once, both with every job already due today:
    // each scheduler's first tick catches up on the missed runs.
    let midnight = chrono::NaiveTime::MIN;
    let times = JobTimes {
        digest_at: midnight,
        report_at: midnight,
        announce_at: midnight,
    };
    let (b, c) = tokio::join!(
        app.another_instance_with(|s| s.email.jobs = Some(times)),
        app.another_instance_with(|s| s.email.jobs = Some(times)),
    );
    wait_sql(&app, "select count(*) from job_run", 3).await;
    let is_digest = |m: &Received| m.subject.starts_with("Your sales on");
    mailbox.wait_for(2, WAIT, is_digest).await;

    // Asking again, on both instances at once, runs nothing.
    let admin = app.create_user(Role::Admin).await;
    let empty = json!({});
    let tries = [&b, &c, &b, &c].map(|i| {
        i.post(
            "/api/v1/admin/jobs/seller_daily_digest/run",
            Some(&admin.token),
            &empty,
        )
    });
    for r in join_all(tries).await {
        assert_error(r, 409, "job_already_ran").await;
    }
    // A restart (a new instance) does not run it again either.
    let d = app
        .another_instance_with(|s| s.email.jobs = Some(times))
        .await;
    let (status, v) = body(d.get("/api/v1/admin/jobs", Some(&admin.token)).await).await;
    assert_eq!(status, 200, "{v}");
    wait_sql(
        &app,
        "select count(*) from outbox where status <> 'sent'",
        0,
    )
    .await;

    assert_eq!(app.scalar_i64("select count(*) from job_run").await, 3);
    let digests: Vec<Received> = mailbox.messages().into_iter().filter(is_digest).collect();
    assert_eq!(
        digests.len(),
        2,
        "one digest per seller with sales: {digests:?}"
    );
    let mut by_seller: HashMap<String, &Received> = HashMap::new();
    for m in &digests {
        by_seller.insert(m.to[0].clone(), m);
    }
    for (seller, revenue) in sellers.iter().zip(["36.00 EUR", "24.00 EUR"]) {
        let m = by_seller
            .get(&address(seller))
            .unwrap_or_else(|| panic!("no digest for {}", seller.username));
        assert!(m.text.contains("3 sold in 3 orders"), "{}", m.text);
        assert!(m.text.contains(&format!("Total: {revenue}")), "{}", m.text);
    }
    assert!(!by_seller.contains_key(&address(&idle)));
}

#[tokio::test]
async fn emails_wait_while_the_smtp_server_is_down_and_all_arrive_once_it_is_back() {
    let port = free_port();
    let app = spawn_app_with(smtp(format!("smtp://127.0.0.1:{port}"))).await;
    let sale = app.active_sale(10).await;
    let buyers = app.create_customers(5).await;
    let mut numbers = Vec::new();
    for b in &buyers {
        numbers.push(
            app.buy(sale, b, 1).await["number"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Every email has failed at least twice, and none is lost or dead.
    wait_sql(
        &app,
        "select count(*) from outbox where attempts >= 2 and status = 'pending' and last_error is not null",
        5,
    )
    .await;

    let mailbox = Mailbox::start_on(port).await;
    let got = mailbox
        .wait_for(5, WAIT, |m| m.subject.starts_with("Your order"))
        .await;
    wait_sql(&app, "select count(*) from outbox where status = 'sent'", 5).await;
    let subjects: Vec<&str> = got.iter().map(|m| m.subject.as_str()).collect();
    for n in &numbers {
        let copies = subjects.iter().filter(|s| s.contains(n.as_str())).count();
        assert_eq!(copies, 1, "order {n}: {subjects:?}");
    }
}

/// A sender process killed after claiming an email, before the server
/// answered: the claim times out and another instance sends it.
#[tokio::test]
async fn a_sender_killed_between_claim_and_send_loses_nothing() {
    // An SMTP port that accepts connections and never says a word, so the
    // sender is stuck mid-send when it is killed.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });

    let app = spawn_app().await; // sends nothing itself
    let sale = app.active_sale(10).await;
    let buyer = app.create_user(Role::Customer).await;
    let number = app.buy(sale, &buyer, 1).await["number"]
        .as_str()
        .unwrap()
        .to_string();

    let mut sender = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().await)
        .env("JWT_SECRET", std::str::from_utf8(jwt_secret()).unwrap())
        .env(
            "PAYMENT_WEBHOOK_SECRET",
            std::str::from_utf8(crate::helpers::WEBHOOK_SECRET).unwrap(),
        )
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("BCRYPT_COST", "4")
        .env("JOBS_ENABLED", "false")
        .env("SMTP_URL", format!("smtp://127.0.0.1:{silent_port}"))
        .env("EMAIL_POLL_MS", "50")
        .env("EMAIL_CLAIM_TIMEOUT_SECS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a flashsale process");
    wait_sql(
        &app,
        "select count(*) from outbox where attempts = 1 and status = 'pending'",
        1,
    )
    .await;
    sender.kill().await.expect("kill the sender");
    sender.wait().await.expect("reap it");

    let mailbox = Mailbox::start().await;
    let _other = app.another_instance_with(smtp(mailbox.url())).await;
    let got = mailbox
        .wait_for(1, WAIT, |m| m.subject.contains(&number))
        .await;
    assert_eq!(got.len(), 1);
    wait_sql(
        &app,
        "select count(*) from outbox where status = 'sent' and attempts = 2",
        1,
    )
    .await;
}

#[tokio::test]
async fn the_embedded_default_writes_each_email_as_an_eml_file() {
    let dir = std::env::temp_dir().join(format!("flashsale-eml-{}", uuid::Uuid::new_v4()));
    let d = dir.clone();
    let app = spawn_app_with(move |s| {
        s.email.transport = MailTransport::Files(d);
        s.email.poll = Duration::from_millis(50);
    })
    .await;
    let sale = app.active_sale(10).await;
    let buyer = app.create_user(Role::Customer).await;
    let number = app.buy(sale, &buyer, 1).await["number"]
        .as_str()
        .unwrap()
        .to_string();
    wait_sql(&app, "select count(*) from outbox where status = 'sent'", 1).await;
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the email directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        raw.contains(&format!("Subject: Your order {number}")),
        "{raw}"
    );
    assert!(raw.contains(&address(&buyer)), "{raw}");
    // Emails carry live links: the directory and each file are the owner's.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the email directory");
    assert_eq!(mode(&files[0]), 0o600, "the email file");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn registration_sends_a_verification_link_that_works_once() {
    let mailbox = Mailbox::start().await;
    let app = spawn_app_with(smtp(mailbox.url())).await;
    let (status, v) = body(
        app.post(
            "/api/v1/auth/register",
            None,
            &json!({"username": "newreader", "email": "newreader@example.test", "password": PASSWORD}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let got = mailbox
        .wait_for(1, WAIT, |m| {
            m.to.contains(&"newreader@example.test".to_string())
        })
        .await;
    assert_eq!(got[0].subject, "Confirm your email address");
    let url = link(&got[0].text, "/api/v1/auth/verify?token=");
    assert!(url.starts_with(&app.address), "{url}");

    let verified = "select count(*) from app_user where username = 'newreader' and email_verified_at is not null";
    assert_eq!(app.scalar_i64(verified).await, 0);
    let (status, v) = body(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!((status, &v), (200, &json!({"verified": true})));
    assert_eq!(app.scalar_i64(verified).await, 1);
    // Used once: a second click is refused, as a page for browsers.
    assert_error(
        app.client.get(&url).send().await.unwrap(),
        400,
        "invalid_token",
    )
    .await;
    let page = app
        .client
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("This link does not work"));
    assert_error(
        app.get("/api/v1/auth/verify?token=nonsense", None).await,
        400,
        "invalid_token",
    )
    .await;
    assert_error(
        app.get("/api/v1/auth/verify", None).await,
        400,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn purchases_can_require_a_verified_address_in_both_engines() {
    for mode in [PurchaseMode::Combined, PurchaseMode::PerPurchase] {
        let app = spawn_app_with(|s| {
            s.purchase.mode = mode;
            s.purchase.require_verified_email = true;
        })
        .await;
        let sale = app.active_sale(10).await;
        let (status, v) = body(
            app.post(
                "/api/v1/auth/register",
                None,
                &json!({"username": "eager", "email": "eager@example.test", "password": PASSWORD}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        let user = crate::helpers::TestUser {
            id: v["user"]["id"].as_i64().unwrap(),
            username: "eager".into(),
            token: v["access_token"].as_str().unwrap().into(),
        };
        assert_error(
            app.purchase(sale, &user, Some(1)).await,
            403,
            "email_not_verified",
        )
        .await;
        assert_eq!(
            app.scalar_i64("select count(*) from purchase_order").await,
            0
        );

        // The token is still waiting in the outbox (no transport here).
        let token: String = sqlx::query_scalar(
            "select payload->>'token' from outbox where kind = 'verify_email' and user_id = $1",
        )
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let r = app
            .get(&format!("/api/v1/auth/verify?token={token}"), None)
            .await;
        assert_eq!(r.status(), 200, "{mode:?}");
        app.buy(sale, &user, 1).await;
    }
}

#[tokio::test]
async fn a_forgotten_password_is_reset_once_by_the_emailed_link() {
    let mailbox = Mailbox::start().await;
    let app = spawn_app_with(smtp(mailbox.url())).await;
    let user = app.create_user(Role::Customer).await;
    let email = address(&user);
    let (_, session) = body(
        app.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user.username, "password": PASSWORD}),
        )
        .await,
    )
    .await;

    // The same answer for an unknown address and a known one.
    let unknown = body(
        app.post(
            "/api/v1/auth/forgot",
            None,
            &json!({"email": "nobody@example.test"}),
        )
        .await,
    )
    .await;
    let known = body(
        app.post("/api/v1/auth/forgot", None, &json!({"email": email}))
            .await,
    )
    .await;
    assert_eq!(unknown, known);
    assert_eq!(known.0, 202);
    assert_error(
        app.post(
            "/api/v1/auth/forgot",
            None,
            &json!({"email": "not an address"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;

    let got = mailbox.wait_for(1, WAIT, |m| m.to.contains(&email)).await;
    assert_eq!(got[0].subject, "Reset your password");
    let url = link(&got[0].text, "/reset-password?token=");
    let token = url.split("token=").nth(1).unwrap().to_string();
    // The link opens the reset page.
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Choose a new password"));

    assert_error(
        app.post(
            "/api/v1/auth/reset",
            None,
            &json!({"token": token, "password": "short"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let r = app
        .post(
            "/api/v1/auth/reset",
            None,
            &json!({"token": token, "password": "a-brand-new-secret"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_error(
        app.post(
            "/api/v1/auth/reset",
            None,
            &json!({"token": token, "password": "yet-another-secret"}),
        )
        .await,
        400,
        "invalid_token",
    )
    .await;
    // The new password works, the old one does not, old sessions are gone.
    let login = |pw: &str| {
        let body = json!({"username": user.username, "password": pw});
        let app = &app;
        async move { app.post("/api/v1/auth/login", None, &body).await }
    };
    assert_eq!(login("a-brand-new-secret").await.status(), 200);
    assert_error(login(PASSWORD).await, 401, "invalid_credentials").await;
    assert_error(
        app.post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": session["refresh_token"]}),
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        app.post(
            "/api/v1/auth/reset",
            None,
            &json!({"token": "", "password": "whatever-long"}),
        )
        .await,
        400,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn reset_links_expire_and_a_newer_one_replaces_the_older() {
    let app = spawn_app().await;
    let user = app.create_user(Role::Customer).await;
    let token_of = |n: i64| {
        let pool = app.pool.clone();
        async move {
            let t: String = sqlx::query_scalar(
                "select payload->>'token' from outbox where kind = 'password_reset'
                  order by id offset $1 limit 1",
            )
            .bind(n)
            .fetch_one(&pool)
            .await
            .unwrap();
            t
        }
    };
    let forgot_body = json!({"email": address(&user)});
    let forgot = || app.post("/api/v1/auth/forgot", None, &forgot_body);
    let rows = "select count(*) from outbox where kind = 'password_reset'";
    assert_eq!(forgot().await.status(), 202);
    wait_sql(&app, rows, 1).await;
    assert_eq!(forgot().await.status(), 202);
    wait_sql(&app, rows, 2).await;
    let (first, second) = (token_of(0).await, token_of(1).await);
    let reset = |t: String| {
        let body = json!({"token": t, "password": "a-brand-new-secret"});
        let app = &app;
        async move { app.post("/api/v1/auth/reset", None, &body).await }
    };
    assert_error(reset(first).await, 400, "invalid_token").await;
    sqlx::query("update email_token set expires_at = now() - interval '1 second' where purpose = 'password_reset'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_error(reset(second).await, 400, "invalid_token").await;
}

#[tokio::test]
async fn the_unsubscribe_link_stops_announcements() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    sqlx::query(
        "insert into app_user (username, email, password_hash, email_verified_at)
         values ('reader', 'reader@example.test', 'x', now())",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let token: String = sqlx::query_scalar(
        "select unsubscribe_token::text from app_user where username = 'reader'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let page = app
        .client
        .get(app.url(&format!("/api/v1/unsubscribe?token={token}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Unsubscribed"));
    assert_eq!(
        app.scalar_i64(
            "select count(*) from app_user where username = 'reader' and not announcements"
        )
        .await,
        1
    );
    assert_error(
        app.get("/api/v1/unsubscribe?token=not-a-token", None).await,
        400,
        "invalid_token",
    )
    .await;
    assert_error(
        app.get(
            &format!("/api/v1/unsubscribe?token={}", uuid::Uuid::new_v4()),
            None,
        )
        .await,
        400,
        "invalid_token",
    )
    .await;

    // The next announcement skips the reader.
    app.create_product(999).await;
    let (status, v) = body(
        app.post(
            "/api/v1/admin/jobs/new_products/run",
            Some(&admin.token),
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["emails"], 0, "{v}");
}

#[tokio::test]
async fn admins_see_dead_emails_and_can_queue_them_again() {
    let app = spawn_app_with(|s| {
        s.email.transport = MailTransport::Files(std::env::temp_dir().join("flashsale-dead-test"));
        s.email.poll = Duration::from_millis(50);
    })
    .await;
    let admin = app.create_user(Role::Admin).await;
    let customer = app.create_user(Role::Customer).await;
    // An email whose order does not exist cannot be rendered: dead at once.
    let id: i64 = sqlx::query_scalar(
        "insert into outbox (kind, user_id, order_id) values ('order_confirmation', $1, -1) returning id",
    )
    .bind(customer.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    wait_sql(&app, "select count(*) from outbox where status = 'dead'", 1).await;

    let (status, v) = body(
        app.get("/api/v1/admin/outbox?status=dead", Some(&admin.token))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dead"], 1, "{v}");
    assert_eq!(v["items"][0]["id"], id, "{v}");
    assert_eq!(v["items"][0]["to"], address(&customer), "{v}");
    assert!(
        v["items"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("order"),
        "{v}"
    );
    let retry = format!("/api/v1/admin/outbox/{id}/retry");
    assert_eq!(
        app.post(&retry, Some(&admin.token), &json!({}))
            .await
            .status(),
        204
    );
    // It fails the same way again; a row that is not dead cannot be retried.
    wait_sql(
        &app,
        "select count(*) from outbox where status = 'dead' and attempts = 1",
        1,
    )
    .await;
    assert_error(
        app.post(
            "/api/v1/admin/outbox/999999/retry",
            Some(&admin.token),
            &json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;

    assert_error(
        app.get("/api/v1/admin/outbox", Some(&customer.token)).await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        app.get("/api/v1/admin/outbox?status=lost", Some(&admin.token))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/admin/outbox?limit=0", Some(&admin.token))
            .await,
        422,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn admins_list_jobs_and_run_one_now() {
    let app = spawn_app().await;
    let admin = app.create_user(Role::Admin).await;
    let customer = app.create_user(Role::Customer).await;
    let (status, v) = body(app.get("/api/v1/admin/jobs", Some(&admin.token)).await).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "seller_daily_digest",
            "seller_monthly_report",
            "new_products"
        ]
    );

    let run = |name: &str, token: &str| {
        let (path, token, app) = (
            format!("/api/v1/admin/jobs/{name}/run"),
            token.to_string(),
            &app,
        );
        async move { app.post(&path, Some(&token), &json!({})).await }
    };
    let (status, v) = body(run("seller_monthly_report", &admin.token).await).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["ran"], true);
    assert_error(
        run("seller_monthly_report", &admin.token).await,
        409,
        "job_already_ran",
    )
    .await;
    assert_error(run("weekly_poem", &admin.token).await, 404, "not_found").await;
    assert_error(run("new_products", &customer.token).await, 403, "forbidden").await;
    let (_, v) = body(app.get("/api/v1/admin/jobs", Some(&admin.token)).await).await;
    assert_eq!(v["items"][1]["recent_runs"][0]["trigger"], "admin", "{v}");
}
