//! pgbench, the reference for transactional throughput, on the benchmark's own cluster.

use std::process::Command;

use anyhow::{Context, bail};
use db_core::LocalCluster;

use crate::report::progress;

/// What one pgbench run measured.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchResult {
    pub tps: f64,
}

/// The pgbench program: next to the server programs, else on PATH.
fn program(cluster: &LocalCluster) -> std::path::PathBuf {
    let beside = cluster.binaries().dir().join("pgbench");
    if beside.exists() {
        beside
    } else {
        std::path::PathBuf::from("pgbench")
    }
}

fn command(cluster: &LocalCluster, database: &str) -> Command {
    let mut command = Command::new(program(cluster));
    command
        .arg("-h")
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .arg("-U")
        .arg("postgres")
        .env_remove("PGDATABASE")
        .env("PGDATABASE", database);
    command
}

/// Creates database `database` with pgbench's tables at `scale` (scale 10: 1M accounts).
pub fn initialise(cluster: &LocalCluster, database: &str, scale: u32) -> anyhow::Result<()> {
    progress(&format!("pgbench -i -s {scale} into {database}"));
    let output = command(cluster, "postgres")
        .args(["-i", "-q", "-s", &scale.to_string(), database])
        .output()
        .context("cannot run pgbench (Debian: apt-get install postgresql-client)")?;
    if !output.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Runs the built-in TPC-B-like script with prepared statements, `clients` clients for
/// `seconds`, on two threads (the machine's cores).
pub fn tpcb(
    cluster: &LocalCluster,
    database: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PgbenchResult> {
    progress(&format!(
        "pgbench TPC-B-like, {clients} clients, {seconds} s"
    ));
    run(cluster, database, &[], clients, seconds)
}

/// Runs the built-in select-only script (`-S`: one primary-key lookup per transaction) with
/// prepared statements, `clients` clients for `seconds`, on two threads.
pub fn select_only(
    cluster: &LocalCluster,
    database: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PgbenchResult> {
    progress(&format!(
        "pgbench select-only, {clients} clients, {seconds} s"
    ));
    run(cluster, database, &["-S"], clients, seconds)
}

fn run(
    cluster: &LocalCluster,
    database: &str,
    script: &[&str],
    clients: usize,
    seconds: u64,
) -> anyhow::Result<PgbenchResult> {
    let output = command(cluster, database)
        .args(script)
        .args([
            "-n",
            "-M",
            "prepared",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &seconds.to_string(),
            database,
        ])
        .output()
        .context("cannot run pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number_after = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
    };
    let tps = number_after("tps = ").context("pgbench printed no tps")?;
    Ok(PgbenchResult { tps })
}
