//! The commands that run a scenario (or measure the ceiling, or hold a
//! cluster), behind the argument parsing of `main`.

use std::path::PathBuf;
use std::time::Duration;

use stress::environment::{default_server_env, start_cluster, Environment, Topology};
use stress::provision::AdminLogin;
use stress::scenario::{Common, Scenario};
use stress::{report, run_and_verify};

use super::{CommonArgs, HoldArgs};

pub(crate) async fn execute(
    a: CommonArgs,
    hold: HoldArgs,
    scenario: Scenario,
) -> anyhow::Result<bool> {
    if (a.pooler.is_some() || a.replica) && !a.targets.is_empty() {
        anyhow::bail!("--pooler and --replica need the self-contained mode: drop --target");
    }
    if a.chaos.is_some() && !a.targets.is_empty() {
        anyhow::bail!("--chaos needs the self-contained mode: drop --target");
    }
    if a.chaos
        .is_some_and(|c| c.kind == stress::chaos::ChaosKind::KillInstance)
        && a.instances < 2
    {
        anyhow::bail!("--chaos kill-instance needs --instances 2 or more");
    }
    if a.chaos
        .is_some_and(|c| c.kind == stress::chaos::ChaosKind::Failover)
        && (!a.replica || a.pooler.is_some())
    {
        anyhow::bail!(
            "--chaos failover needs --replica (the standby to promote), without --pooler"
        );
    }
    let env = if a.targets.is_empty() {
        let mut server_env = default_server_env();
        if let Scenario::Cart(_) = scenario {
            server_env.push(("CART_HOLD_SECS".into(), hold.hold_secs.to_string()));
        }
        for kv in &a.server_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--server-env {kv:?} is not KEY=VALUE"))?;
            server_env.push((k.to_string(), v.to_string()));
        }
        eprintln!(
            "starting a private PostgreSQL and {} flashsale instance(s)...",
            a.instances
        );
        let instances = a.instances.max(1);
        let topology = Topology {
            pool_size: a
                .pooler
                .as_ref()
                .map(|_| a.pool_size.unwrap_or(10 * instances as u32).max(1)),
            replica: a.replica,
            sync_standby: a.sync_standby,
        };
        Environment::self_contained_with(
            instances,
            &server_env,
            &std::env::current_exe()?,
            topology,
        )
        .await?
    } else {
        Environment::external(
            a.targets.clone(),
            a.database_url.as_deref(),
            a.jwt_secret.as_deref(),
        )
        .await?
    };
    let common = Common {
        connections: a.connections.max(1),
        timeout: Duration::from_secs(a.timeout_secs.max(1)),
        admin: AdminLogin {
            username: a.admin_user.clone(),
            password: a.admin_password.clone(),
        },
        hold_secs: hold.hold_secs,
        chaos: a.chaos,
    };
    let result = run_and_verify(&env, &common, &scenario).await;
    env.shutdown().await;
    let summary = result?;
    print!("{}", report::text(&summary));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &a.html {
        std::fs::write(path, report::html(&summary))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(summary.violations.is_empty())
}

pub(crate) async fn ceiling(
    seconds: u64,
    clients: usize,
    json: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let c = stress::ceiling::measure(&stress::ceiling::Options { seconds, clients }).await?;
    print!("{}", stress::ceiling::text(&c));
    if let Some(path) = &json {
        std::fs::write(path, serde_json::to_string_pretty(&c)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(c.consistent)
}

pub(crate) async fn hold_db(dir: PathBuf) -> anyhow::Result<bool> {
    let dir = std::path::absolute(&dir)?;
    let pg = start_cluster(dir).await?;
    flashsale::run::create_database(&pg, "bench").await?;
    println!("{}", pg.url("bench"));
    eprintln!("holding the cluster; Ctrl-C stops it");
    tokio::signal::ctrl_c().await?;
    tokio::task::spawn_blocking(move || pg.stop()).await?;
    Ok(true)
}
