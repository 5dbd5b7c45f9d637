//! TLS to PostgreSQL: a private cluster with `ssl = on` and a certificate
//! signed by a throwaway CA made here with openssl. `sslmode=require`
//! encrypts; `sslmode=verify-full` with `sslrootcert` naming the CA connects,
//! and without the CA (or with another one) it is refused. The URLs are the
//! ones an operator puts in `DATABASE_URL`, read the way the server reads
//! it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use flashsale::embedded_pg::{EmbeddedOptions, EmbeddedPg};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS test (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it,
/// plus a second CA that signed nothing, in `dir`.
fn make_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=flashsale test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// A private cluster serving TLS with the certificate made in `certs`.
async fn tls_cluster(certs: &Path) -> EmbeddedPg {
    let dir = flashsale::embedded_pg::scratch_dir("flashsale-tls-test").unwrap();
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPg::start(&EmbeddedOptions {
            data_dir: dir,
            bin_dir: None,
            ephemeral: true,
            max_connections: 20,
        })
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    // The server reads its key as the cluster's owner, and only from a file
    // nobody else can read.
    let pgdata = pg.data_dir().join("pg");
    let owner = std::fs::metadata(&pgdata).unwrap();
    for name in ["server.crt", "server.key"] {
        let to = pgdata.join(name);
        std::fs::copy(certs.join(name), &to).unwrap();
        std::os::unix::fs::chown(&to, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut admin = pg.connect_options("postgres").connect().await.unwrap();
    for sql in [
        "alter system set ssl_cert_file = 'server.crt'",
        "alter system set ssl_key_file = 'server.key'",
        "alter system set ssl = on",
        "select pg_reload_conf()",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    pg
}

/// `DATABASE_URL` for the cluster with these TLS parameters.
fn url(pg: &EmbeddedPg, host: &str, params: &str) -> String {
    let base = pg.url("postgres").replace("127.0.0.1", host);
    format!("{base}?{params}")
}

/// Connects with `url` (read as the server reads `DATABASE_URL`) and says
/// whether the connection is encrypted.
async fn encrypted(url: &str) -> Result<bool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let mut conn = options.connect().await?;
    sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
}

#[tokio::test]
async fn sslmode_require_and_verify_full_work_and_a_wrong_ca_is_refused() {
    let certs: PathBuf = flashsale::embedded_pg::scratch_dir("flashsale-tls-certs").unwrap();
    make_certificates(&certs);
    let pg = tls_cluster(&certs).await;
    let ca = certs.join("ca.crt");
    let other = certs.join("other-ca.crt");

    // The reload turns TLS on shortly after it is asked for.
    let require = url(&pg, "127.0.0.1", "sslmode=require");
    let start = Instant::now();
    loop {
        match encrypted(&require).await {
            Ok(true) => break,
            result => assert!(
                start.elapsed() < Duration::from_secs(10),
                "TLS is not on after 10 s: {result:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // verify-full checks the chain and the host name.
    let full = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert!(encrypted(&full).await.expect("verify-full with the CA"));
    let by_ip = url(
        &pg,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert!(encrypted(&by_ip).await.expect("verify-full by IP"));

    // Without the CA (only the public roots) and with another CA: refused.
    let no_ca = url(&pg, "localhost", "sslmode=verify-full");
    assert!(
        encrypted(&no_ca).await.is_err(),
        "verify-full trusted an unknown CA"
    );
    let wrong_ca = url(
        &pg,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    assert!(
        encrypted(&wrong_ca).await.is_err(),
        "verify-full trusted another CA"
    );

    // The server's own pool connects through it too.
    let pool = flashsale::db::connect(
        PgConnectOptions::from_str(&full).unwrap(),
        &crate::helpers::test_settings(),
        false,
    )
    .await
    .expect("the server's pool over verify-full");
    let ssl: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl);
    pool.close().await;
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&certs);
}
