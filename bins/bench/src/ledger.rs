//! The ledger against pgbench's TPC-B-like script on the same cluster:
//!
//! 1. `single_uniform_c8`: one transfer per call and commit, 8 clients, 10,000 wallets, uniform;
//! 2. `hot_wallet_c8`: the same, every transfer paid by one (system) wallet, against (1);
//! 3. `linked_batches_1000`: linked batches of 1,000 uniform transfers;
//! 4. `single_uniform_c8_sealing`: (1) while the sealer seals continuously, against (1);
//!
//! and the bytes one transfer takes on disk, indexes included. Each scenario alternates with
//! its reference for a few rounds and compares the medians, so that a noisy neighbour slowing
//! the machine for a few seconds hits both sides. Before each scenario both databases are
//! vacuumed and checkpointed, so that no scenario pays for the background work (autovacuum of
//! the rows, writing of the pages) that the ones before it left behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use db_core::migrate::core_set;
use db_core::sqlx;
use ledger::{
    Amount, Asset, BatchMode, Issuance, Ledger, LedgerConfig, PgLedger, SystemWallet,
    TransferRequest, WalletId,
};

use crate::cluster::BenchCluster;
use crate::compare::{Run, alternate, record, settle, wanted};
use crate::load::{self, LoadResult};
use crate::pgbench;
use crate::report::{Measurement, progress};

pub struct Options {
    pub seconds: u64,
    pub rounds: usize,
    pub clients: usize,
    pub wallets: usize,
    pub batch_clients: usize,
    /// Scenario names to run (all when empty).
    pub only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        wanted(&self.only, scenario)
    }
}

const AREA: &str = "ledger";
const BATCH: usize = 1_000;
/// How often the sealer of scenario 4 seals.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a scenario's load needs, cheap to clone into each client.
#[derive(Clone)]
struct World {
    ledger: Arc<PgLedger>,
    wallets: Arc<Vec<WalletId>>,
    hot_wallet: WalletId,
    unit: Amount,
}

pub async fn run(options: &Options) -> anyhow::Result<Vec<Measurement>> {
    let bench = BenchCluster::start(
        vec![core_set(), ledger::migration_set()],
        options.clients as u32 + 4,
    )
    .await?;
    let config = LedgerConfig {
        engine_connections: options.clients.max(options.batch_clients),
        ..LedgerConfig::default()
    };
    let db = bench.db.clone();
    let ledger = Arc::new(PgLedger::new(db.clone(), config));
    let wallets = Arc::new(setup_wallets(&bench, &ledger, options.wallets).await?);
    // The hot wallet is the rewards pool, bounded like any wallet but the issuer: funded by
    // issuance, spread over its shards, each shard paying from what it holds.
    let hot_wallet = ledger
        .system_wallet(SystemWallet::RewardsPool, &Asset::fodi())
        .await?;
    ledger
        .issue(Issuance::new(
            hot_wallet.id,
            Amount::tokens(1_000_000_000).context("pool funds")?,
        ))
        .await?;
    let world = World {
        ledger: ledger.clone(),
        wallets,
        hot_wallet: hot_wallet.id,
        unit: Amount::new(1)?,
    };
    let duration = Duration::from_secs(options.seconds);
    let clients = options.clients;

    db_core::create_database_if_missing(&bench.cluster.connect_options("postgres"), "pgbench")
        .await?;
    pgbench::initialise(&bench.cluster, "pgbench", 10)?;
    let cluster = bench.cluster.clone();
    let tpcb = {
        let cluster = cluster.clone();
        move || {
            let cluster = cluster.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    pgbench::tpcb(&cluster, "pgbench", clients, duration.as_secs())
                })
                .await?
                .map(|result| result.tps)
            }
        }
    };
    // Warm both up, so neither pays for cold caches in a measured run.
    progress("warming up");
    tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || pgbench::tpcb(&cluster, "pgbench", clients, 3)
    })
    .await??;
    uniform(&world, clients, Duration::from_secs(3)).await;

    let reference_name = format!("pgbench_tpcb_c{clients}");
    let single_name = format!("single_uniform_c{clients}");
    let mut measurements = Vec::new();

    if options.wants("single_uniform")
        || options.wants("hot_wallet")
        || options.wants("single_uniform_sealing")
    {
        settle(&db, &cluster).await?;
        progress("scenario 1: single transfers, uniform");
        let world = world.clone();
        let (reference, ours) = alternate(options.rounds, tpcb.clone(), move || {
            uniform_owned(world.clone(), clients, duration)
        })
        .await?;
        record(
            &mut measurements,
            Measurement::new(AREA, single_name.clone(), "transfers_per_s", ours.rate)
                .against(&reference_name, reference, 1.0)
                .latency(&ours.latency)
                .with("failures", ours.failures)
                .with("wallets", options.wallets as u64)
                .with("rounds", options.rounds as u64),
        );
    }

    if options.wants("hot_wallet") {
        settle(&db, &cluster).await?;
        progress("scenario 2: single transfers, all paid by one hot wallet");
        let (uniform_world, hot_world) = (world.clone(), world.clone());
        let (reference, ours) = alternate(
            options.rounds,
            move || {
                let world = uniform_world.clone();
                async move { Ok(uniform(&world, clients, duration).await.units_per_second()) }
            },
            move || hot(hot_world.clone(), clients, duration),
        )
        .await?;
        record(
            &mut measurements,
            Measurement::new(
                AREA,
                format!("hot_wallet_c{clients}"),
                "transfers_per_s",
                ours.rate,
            )
            .against(single_name.clone(), reference, 0.5)
            .latency(&ours.latency)
            .with("failures", ours.failures)
            .with("hot_wallet_shards", i64::from(hot_wallet.shard_count)),
        );
    }

    if options.wants("linked_batches") {
        settle(&db, &cluster).await?;
        progress("scenario 3: linked batches of 1,000");
        let (batch_world, batch_clients) = (world.clone(), options.batch_clients);
        let (reference, ours) = alternate(options.rounds, tpcb.clone(), move || {
            batches(batch_world.clone(), batch_clients, duration)
        })
        .await?;
        record(
            &mut measurements,
            Measurement::new(AREA, "linked_batches_1000", "transfers_per_s", ours.rate)
                .against(&reference_name, reference, 10.0)
                .latency(&ours.latency)
                .with("batch_clients", batch_clients as u64)
                .with("failures", ours.failures),
        );
    }

    if options.wants("single_uniform_sealing") {
        settle(&db, &cluster).await?;
        progress("scenario 4: single transfers, uniform, while the sealer seals");
        let (plain_world, sealing_world) = (world.clone(), world.clone());
        let (reference, ours) = alternate(
            options.rounds,
            move || {
                let world = plain_world.clone();
                async move { Ok(uniform(&world, clients, duration).await.units_per_second()) }
            },
            move || with_sealer(sealing_world.clone(), clients, duration),
        )
        .await?;
        record(
            &mut measurements,
            Measurement::new(
                AREA,
                format!("single_uniform_c{clients}_sealing"),
                "transfers_per_s",
                ours.rate,
            )
            .against(single_name.clone(), reference, 0.9)
            .latency(&ours.latency)
            .with("blocks_sealed", ours.extra),
        );
        let verification = ledger.verify_chain().await?;
        anyhow::ensure!(
            verification.is_valid(),
            "the sealed chain does not verify: {verification:?}"
        );
    }

    let (bytes, transfers): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size('blockchain.fodi_transactions'), (SELECT count(*) FROM blockchain.fodi_transactions)",
    )
    .fetch_one(bench.db.primary())
    .await?;
    record(
        &mut measurements,
        Measurement::new(
            AREA,
            "storage",
            "bytes_per_transfer",
            bytes as f64 / transfers.max(1) as f64,
        )
        .against("target_bytes_per_transfer", 500.0, 1.0)
        .lower_is_better()
        .with("transfers", transfers)
        .with("total_bytes", bytes),
    );

    let report = ledger.check_invariants().await?;
    anyhow::ensure!(
        report.is_ok(),
        "ledger invariants violated after the benchmark: {:?}",
        report.violations
    );
    progress(&format!(
        "invariants hold over {} transfers",
        report.transfers
    ));
    Ok(measurements)
}

/// Uniform single transfers among the wallets.
async fn uniform(world: &World, clients: usize, duration: Duration) -> LoadResult {
    let world = world.clone();
    load::run(clients, duration, move |_| {
        let world = world.clone();
        async move {
            let (from, to) = distinct_pair(&world.wallets);
            world
                .ledger
                .transfer(TransferRequest::transfer(from, to, world.unit))
                .await
                .map(|_| 1)
        }
    })
    .await
}

async fn uniform_owned(world: World, clients: usize, duration: Duration) -> Run {
    uniform(&world, clients, duration).await.into()
}

/// Single transfers, every one paid by the hot wallet.
async fn hot(world: World, clients: usize, duration: Duration) -> Run {
    load::run(clients, duration, move |_| {
        let world = world.clone();
        async move {
            let to = world.wallets[fastrand::usize(..world.wallets.len())];
            world
                .ledger
                .transfer(TransferRequest::transfer(world.hot_wallet, to, world.unit))
                .await
                .map(|_| 1)
        }
    })
    .await
    .into()
}

/// Linked batches of uniform transfers.
async fn batches(world: World, clients: usize, duration: Duration) -> Run {
    load::run(clients, duration, move |_| {
        let world = world.clone();
        async move {
            let batch: Vec<TransferRequest> = (0..BATCH)
                .map(|_| {
                    let (from, to) = distinct_pair(&world.wallets);
                    TransferRequest::transfer(from, to, world.unit)
                })
                .collect();
            let results = world.ledger.submit(batch, BatchMode::Linked).await?;
            match results.iter().find_map(|result| result.as_ref().err()) {
                None => Ok(BATCH as u64),
                Some(error) => Err(ledger::LedgerError::UnexpectedResult(format!(
                    "batch item failed: {error}"
                ))),
            }
        }
    })
    .await
    .into()
}

/// Uniform single transfers while a sealer seals whatever is final, continuously.
async fn with_sealer(world: World, clients: usize, duration: Duration) -> Run {
    let sealing = Arc::new(AtomicBool::new(true));
    let sealer = {
        let (ledger, sealing) = (world.ledger.clone(), sealing.clone());
        tokio::spawn(async move {
            // As a service would run it: every second, seal what has become final.
            let mut blocks = 0u64;
            while sealing.load(Ordering::Relaxed) {
                loop {
                    match ledger.seal_next_block().await {
                        Ok(Some(block))
                            if block.transaction_count >= ledger.config().block_size as i32 =>
                        {
                            blocks += 1;
                        }
                        Ok(Some(_)) => {
                            blocks += 1;
                            break;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            progress(&format!("sealer: {error}"));
                            break;
                        }
                    }
                }
                tokio::time::sleep(SEAL_INTERVAL).await;
            }
            blocks
        })
    };
    let result = uniform(&world, clients, duration).await;
    sealing.store(false, Ordering::Relaxed);
    let blocks = sealer.await.unwrap_or(0);
    Run {
        extra: blocks,
        ..result.into()
    }
}

/// `count` users with a FODI wallet each, funded by the issuer in linked batches.
async fn setup_wallets(
    bench: &BenchCluster,
    ledger: &PgLedger,
    count: usize,
) -> anyhow::Result<Vec<WalletId>> {
    progress(&format!("creating {count} funded wallets"));
    let users = bench.create_users(count).await?;
    fund_wallets(ledger, &users).await
}

/// A FODI wallet for each of `users`, each granted a million tokens by the issuer in linked
/// batches; in the users' order.
pub async fn fund_wallets(
    ledger: &PgLedger,
    users: &[uuid::Uuid],
) -> anyhow::Result<Vec<WalletId>> {
    let mut wallets = Vec::with_capacity(users.len());
    for user in users {
        wallets.push(
            ledger
                .open_user_wallet(ledger::UserId(*user), &Asset::fodi())
                .await?
                .id,
        );
    }
    let issuer = ledger
        .system_wallet(SystemWallet::Issuer, &Asset::fodi())
        .await?;
    // Far more than any run spends, with what all wallets hold (and the pool below) within
    // the 64 bits of units the issuer's balance must fit in.
    let grant = Amount::tokens(100_000).context("grant")?;
    for chunk in wallets.chunks(BATCH) {
        let batch = chunk
            .iter()
            .map(|wallet| TransferRequest::transfer(issuer.id, *wallet, grant))
            .collect();
        let results = ledger.submit(batch, BatchMode::Linked).await?;
        anyhow::ensure!(
            results.iter().all(Result::is_ok),
            "funding failed: {:?}",
            results.iter().find(|r| r.is_err())
        );
    }
    Ok(wallets)
}

/// Two different wallets, uniformly.
pub fn distinct_pair(wallets: &[WalletId]) -> (WalletId, WalletId) {
    let from = fastrand::usize(..wallets.len());
    let mut to = fastrand::usize(..wallets.len() - 1);
    if to >= from {
        to += 1;
    }
    (wallets[from], wallets[to])
}
