//! The `migrator` binary: applies, reports and verifies the migrations of every schema owner.
//!
//! `main.rs` parses arguments and sets up logging; [`run`] resolves the database (a URL or the
//! embedded cluster), builds the [`Migrator`] over every crate's set and executes one command.
//! Rendering for humans and for `--json` lives in `report`.
//!
//! Architecture invariant: the migrator holds no migration logic of its own; ordering,
//! locking and drift detection are db-core's, and the SQL belongs to the crates.

pub mod cli;
mod report;

use std::process::ExitCode;

use db_core::migrate::{MigrateError, MigrationSet, Migrator, UpOptions};
use db_core::{DatabaseTarget, DbConfig};

use cli::{Cli, Command};
use report::Report;

/// The part of the shared configuration the migrator reads.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    pub database: DbConfig,
    pub migrations: MigrationSettings,
}

/// The `[migrations]` section, shared with the api-server (so unknown keys are tolerated).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct MigrationSettings {
    /// The sets this deployment manages when no --set is given; empty means all.
    pub sets: Vec<String>,
}

/// Exit status when `verify` finds pending or drifted migrations.
pub const EXIT_NOT_CURRENT: u8 = 2;

/// Every migration set of the workspace, in the order they are declared (the migrator
/// re-orders them by dependency).
pub fn all_sets() -> Vec<MigrationSet> {
    vec![
        db_core::migrate::core_set(),
        ai_store::migration_set(),
        ledger::migration_set(),
        analytics::migration_set(),
    ]
}

/// Runs one command and prints its outcome (text, or JSON with `--json`).
pub async fn run(cli: Cli) -> ExitCode {
    let report = Report::new(cli.json);
    match execute(&cli, &report).await {
        Ok(code) => code,
        Err(error) => {
            report.error(&error);
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: &Cli, report: &Report) -> Result<ExitCode, anyhow::Error> {
    let Settings {
        mut database,
        migrations,
    } = app_config::load::<Settings>(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        database.url = Some(url.clone());
    }
    let (Command::Up { sets, .. } | Command::Status { sets } | Command::Verify { sets }) =
        &cli.command;
    let selection = if sets.names.is_empty() {
        &migrations.sets
    } else {
        &sets.names
    };
    // Validate the selection before touching any database.
    let migrator = Migrator::new(all_sets())?.select(selection)?;
    let target = resolve_database(&database).await?;
    let mut connection = target.connect().await?;
    let database_name = target.describe();

    let code = match &cli.command {
        Command::Up {
            target: version,
            dry_run,
            ..
        } => {
            let options = UpOptions {
                target: *version,
                dry_run: *dry_run,
            };
            let outcome = migrator.up(&mut connection, options).await?;
            report.up(&database_name, &outcome);
            ExitCode::SUCCESS
        }
        Command::Status { .. } => {
            let statuses = migrator.status(&mut connection).await?;
            report.status(&database_name, &statuses, false);
            ExitCode::SUCCESS
        }
        Command::Verify { .. } => {
            let statuses = migrator.status(&mut connection).await?;
            report.status(&database_name, &statuses, true);
            if statuses.iter().all(|status| status.is_current()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_CURRENT)
            }
        }
    };
    drop(connection);
    // Dropping the target stops the embedded cluster if this run started it.
    drop(target);
    Ok(code)
}

async fn resolve_database(config: &DbConfig) -> Result<DatabaseTarget, MigrateError> {
    if config.url.is_none() {
        tracing::info!(dir = %config.local_dir.display(), "no database url configured; using the embedded cluster");
    }
    Ok(DatabaseTarget::resolve(config).await?)
}
