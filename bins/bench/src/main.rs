//! Benchmarks of the FODI areas, each against a reference measured in the same run on the same
//! machine (these machines are shared and noisy: ratios, not absolute numbers, are the result).
//!
//! `cargo run --release -p bench -- ledger` (or `ai`, `analytics`, `api`, `supervisor`) prints one JSON line per scenario on
//! stdout (the shape of docs/benchmarks.md) and its progress on stderr. Areas are added as they
//! are built.

mod ai;
mod analytics;
mod api;
mod cluster;
mod compare;
mod ledger;
mod load;
mod pgbench;
mod programs;
mod redis_server;
mod report;
mod supervisor;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks against references measured in the same run"
)]
struct Cli {
    /// Seconds each measured run lasts (the reference runs as long).
    #[arg(long, default_value_t = 5, global = true)]
    seconds: u64,
    /// Each scenario alternates with its reference this many times; medians are compared.
    #[arg(long, default_value_t = 3, global = true)]
    rounds: usize,
    /// Run only the scenarios whose names start with these (repeatable).
    #[arg(long = "only", value_name = "SCENARIO", global = true)]
    only: Vec<String>,
    #[command(subcommand)]
    area: Area,
}

#[derive(Debug, Subcommand)]
enum Area {
    /// The token ledger against pgbench's TPC-B-like script.
    Ledger {
        /// Concurrent clients of the single-transfer scenarios (and of pgbench).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Wallets the transfers move between.
        #[arg(long, default_value_t = 10_000)]
        wallets: usize,
        /// Concurrent clients submitting batches (two keep both cores busy; more only queue on
        /// the same balance rows).
        #[arg(long, default_value_t = 2)]
        batch_clients: usize,
    },
    /// The AI store: cache hits against `pgbench -S` and Redis, cleanup, conversation
    /// windows and full-text search.
    Ai {
        /// Concurrent tasks reading (and pgbench's and Redis's clients).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Users owning the cache entries, conversations and facts.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Facts of each user searched by the full-text scenario.
        #[arg(long, default_value_t = 100)]
        facts_per_user: usize,
    },
    /// Analytics: the recorder against COPY, record latency, bucketed queries and the
    /// rollup's refresh over 10 million rows.
    Analytics {
        /// Rows of each ingestion scenario.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Rows in the tables of the query and refresh scenarios.
        #[arg(long, default_value_t = 10_000_000)]
        big_rows: usize,
    },
    /// The api-server over HTTP (wrk) against the library-level rate of the same operations.
    Api,
    /// The supervisor binary against supervisord: crash and hang recovery, idle cost.
    Supervisor {
        /// kill -9 repetitions for each supervisor.
        #[arg(long, default_value_t = 10)]
        repetitions: usize,
        /// SIGSTOP repetitions (ours; supervisord is given one).
        #[arg(long, default_value_t = 3)]
        hang_repetitions: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let measurements = match cli.area {
        Area::Ledger {
            clients,
            wallets,
            batch_clients,
        } => {
            let options = ledger::Options {
                seconds: cli.seconds,
                rounds: cli.rounds,
                clients,
                wallets,
                batch_clients,
                only: cli.only,
            };
            // One thread: the ledger's load waits on the database, not on the client.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ledger::run(&options))?
        }
        Area::Ai {
            clients,
            users,
            facts_per_user,
        } => {
            let options = ai::Options {
                seconds: cli.seconds,
                rounds: cli.rounds,
                clients,
                users,
                facts_per_user,
                only: cli.only,
            };
            // Two threads, as pgbench runs its clients on (`-j 2`): a cache hit costs the
            // client as much CPU as the server, and the in-process tier costs only the client.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(ai::run(&options))?
        }
        Area::Analytics { rows, big_rows } => {
            let options = analytics::Options {
                rounds: cli.rounds,
                seconds: cli.seconds,
                rows,
                big_rows,
                only: cli.only,
            };
            // Two threads: the recorder's producers and its writer each get a core, as in a
            // service.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(analytics::run(&options))?
        }
        Area::Api => {
            let options = api::Options {
                seconds: cli.seconds,
                rounds: cli.rounds,
                only: cli.only,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(api::run(&options))?
        }
        Area::Supervisor {
            repetitions,
            hang_repetitions,
        } => {
            let options = supervisor::Options {
                repetitions,
                hang_repetitions,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(supervisor::run(&options))?
        }
    };
    let missed = measurements
        .iter()
        .filter(|measurement| !measurement.meets_target())
        .count();
    report::progress(&format!(
        "{} scenarios, {missed} below target",
        measurements.len()
    ));
    Ok(())
}
