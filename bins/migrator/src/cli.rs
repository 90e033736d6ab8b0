//! Command-line interface of `migrator`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Applies, reports and verifies the database migrations of every FODI schema owner.
///
/// The database is taken from --database-url, else DATABASE_URL, else `database.url` of the
/// configuration (fodi.toml, FODI__DATABASE__URL); with none of them, the embedded cluster
/// under ./.data/pg is started (and stopped again afterwards if this run started it), except
/// in CI (the CI variable set) or with --require-database-url, where no URL is an error.
#[derive(Debug, Parser)]
#[command(
    name = "migrator",
    version,
    after_help = "Exit status:\n  0  success (verify: every set is current)\n  1  error (unreachable database, drift refused by up, a failed migration, bad arguments)\n  2  verify only: migrations are pending or have drifted\n  3  import-sled only: finished, but some records were rejected (listed in the summary)"
)]
pub struct Cli {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/fodi
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Configuration file (default: ./fodi.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Refuse to run without a database URL instead of using the embedded cluster (implied
    /// when the CI environment variable is set: a job that forgot its URL must not pass by
    /// migrating ./.data/pg).
    #[arg(long, global = true)]
    pub require_database_url: bool,
    /// How long a statement, or the wait for another migrator's lock, may wait for a lock
    /// before the run fails (e.g. 30s, 5m).
    #[arg(long, global = true, default_value = "1m", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, set by set in dependency order.
    Up {
        #[command(flatten)]
        sets: SetSelection,
        /// Apply up to and including this version (needs exactly one --set).
        #[arg(long, value_name = "VERSION")]
        target: Option<i32>,
        /// Print what would be applied; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List applied, pending and drifted migrations per set.
    Status {
        #[command(flatten)]
        sets: SetSelection,
    },
    /// Exit 0 if every set is current, 2 if anything is pending or drifted (a CI gate).
    Verify {
        #[command(flatten)]
        sets: SetSelection,
    },
    /// Recompute the ledger's invariants from its whole history and verify every sealed
    /// block: run it after a restore (docs/operations.md). Exit 0 when both hold, 4 when not,
    /// naming the first block that does not match or the first violation.
    CheckLedger,
    /// Move the AI assistant's former Sled store (trees cache, conversations, memory_facts)
    /// into schema ai. Idempotent: what is present already is skipped, so it can run again.
    /// The layout it expects is in docs/operations.md. Needs the `sled-import` feature (on by
    /// default).
    ImportSled {
        /// The Sled database directory (the assistant must not be running on it).
        path: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SetSelection {
    /// Limit to this set (repeatable): core, ai, blockchain, analytics. Default: the sets of
    /// `migrations.sets` in the configuration, or all of them.
    #[arg(long = "set", value_name = "NAME")]
    pub names: Vec<String>,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime_serde::re::humantime::parse_duration(text).map_err(|error| error.to_string())
}
