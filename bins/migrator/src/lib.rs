//! The `migrator` binary: applies, reports and verifies the migrations of every schema owner.
//!
//! `main.rs` parses arguments and sets up logging; [`run`] resolves the database (a URL or the
//! embedded cluster), builds the [`Migrator`] over every crate's set and executes one command.
//! Rendering for humans and for `--json` lives in `report`; `import-sled` in `sled_import`,
//! which only a build with the `sled-import` feature (on by default) has.
//!
//! Architecture invariant: the migrator holds no migration logic of its own; ordering,
//! locking and drift detection are db-core's, and the SQL belongs to the crates.

pub mod cli;
mod report;
#[cfg(feature = "sled-import")]
pub mod sled_import;

use std::process::ExitCode;

use anyhow::bail;
use db_core::migrate::{MigrationSet, Migrator, UpOptions};
use db_core::sqlx::{self, AssertSqlSafe};
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
    #[serde(deserialize_with = "app_config::list")]
    pub sets: Vec<String>,
}

/// Exit status when `verify` finds pending or drifted migrations.
pub const EXIT_NOT_CURRENT: u8 = 2;
/// Exit status when `import-sled` finished but rejected some records.
pub const EXIT_REJECTED: u8 = 3;
/// Exit status when `check-ledger` finds a violated invariant or a block that does not match.
pub const EXIT_LEDGER_INVALID: u8 = 4;

/// Every migration set of the workspace, in the order they are declared (the migrator
/// re-orders them by dependency). The one list: the api-server serves these too.
pub fn all_sets() -> Vec<MigrationSet> {
    vec![
        core_store::migration_set(),
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

/// What to do with the migrations (import-sled is a command of its own).
enum Action {
    Up(UpOptions),
    Status,
    Verify,
}

async fn execute(cli: &Cli, report: &Report) -> Result<ExitCode, anyhow::Error> {
    let Settings {
        mut database,
        migrations,
    } = app_config::load::<Settings>(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        // The URL given is where the migrator works, as a session: a configuration's pooler
        // and session_url are the api-server's.
        database.url = Some(url.clone());
        database.session_url = None;
        database.pooling = db_core::Pooling::Session;
    }
    let (sets, action) = match &cli.command {
        Command::Up {
            sets,
            target,
            dry_run,
        } => (
            sets,
            Action::Up(UpOptions {
                target: *target,
                dry_run: *dry_run,
            }),
        ),
        Command::CheckLedger => {
            return check_ledger(&database, requires_url(cli), report).await;
        }
        Command::Status { sets } => (sets, Action::Status),
        Command::Verify { sets } => (sets, Action::Verify),
        #[cfg(feature = "sled-import")]
        Command::ImportSled { path } => {
            return import_sled(path, &database, requires_url(cli), cli.json, report).await;
        }
        // Refused before any database is touched, saying how to get a migrator that has it.
        #[cfg(not(feature = "sled-import"))]
        Command::ImportSled { .. } => bail!(
            "this migrator was built without the `sled-import` feature, so it cannot read a \
             Sled store; build it with `cargo build -p migrator --features sled-import`"
        ),
    };
    let selection = if sets.names.is_empty() {
        &migrations.sets
    } else {
        &sets.names
    };
    // Validate the selection before touching any database.
    let migrator = Migrator::new(all_sets())?.select(selection)?;
    let target = resolve_database(&database, requires_url(cli)).await?;
    let mut connection = target.connect().await?;
    // Migrations take locks an application may hold: fail after a while, saying so, rather
    // than queue forever (and hold up every query queued behind the migration).
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET lock_timeout = '{}ms'",
        cli.lock_timeout.as_millis().max(1)
    )))
    .execute(&mut connection)
    .await?;
    let database_name = target.describe();

    let code = match action {
        Action::Up(options) => {
            let outcome = migrator.up(&mut connection, options).await?;
            report.up(&database_name, &outcome);
            ExitCode::SUCCESS
        }
        Action::Status => {
            let statuses = migrator.status(&mut connection).await?;
            report.status(&database_name, &statuses, false);
            ExitCode::SUCCESS
        }
        Action::Verify => {
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

/// Whether running without a URL is an error: asked for, or in CI (`CI` set and not
/// `false`/`0`, as CI services set it).
fn requires_url(cli: &Cli) -> bool {
    let in_ci = std::env::var("CI")
        .is_ok_and(|value| !value.is_empty() && value != "false" && value != "0");
    cli.require_database_url || in_ci
}

async fn resolve_database(
    config: &DbConfig,
    require_url: bool,
) -> Result<DatabaseTarget, anyhow::Error> {
    if config.url.is_none() {
        if require_url {
            bail!(
                "no database url: give --database-url, DATABASE_URL, FODI__DATABASE__URL or \
                 database.url in fodi.toml (in CI, or with --require-database-url, the embedded \
                 cluster is not used, so that a job that forgot its URL fails instead of \
                 migrating ./.data/pg)"
            );
        }
        tracing::warn!(dir = %config.local_dir.display(), "no database url configured; using the embedded cluster");
    }
    Ok(DatabaseTarget::resolve(config).await?)
}

/// A pool on `target` once the migration set `set` is current there (a command working on
/// that schema's tables needs them as this build knows them).
async fn connect_when_current(
    database: &DbConfig,
    target: &DatabaseTarget,
    set: &str,
) -> Result<db_core::Db, anyhow::Error> {
    let mut connection = target.connect().await?;
    let statuses = Migrator::new(all_sets())?
        .select(&[set.to_owned()])?
        .status(&mut connection)
        .await?;
    drop(connection);
    if !statuses.iter().all(|status| status.is_current()) {
        bail!(
            "schema {set} of {} is not current; run `migrator up` first",
            target.describe()
        );
    }
    // The migrator's commands read what they check on the primary.
    let primary_only = DbConfig {
        replica_url: None,
        ..database.clone()
    };
    Ok(db_core::Db::connect_with(&primary_only, target.options.clone()).await?)
}

/// `check-ledger`: checks that schema blockchain is current, then recomputes the invariants
/// and the sealed chain.
async fn check_ledger(
    database: &DbConfig,
    require_url: bool,
    report: &Report,
) -> Result<ExitCode, anyhow::Error> {
    use ledger::Ledger;
    let target = resolve_database(database, require_url).await?;
    let db = connect_when_current(database, &target, "blockchain").await?;
    let ledger = ledger::PgLedger::new(db.clone(), ledger::pg::LedgerConfig::default());
    let checked = async {
        Ok::<_, ledger::LedgerError>((ledger.audit().await?, ledger.seal_status().await?))
    }
    .await;
    ledger.shutdown().await;
    db.close().await;
    let (audit, sealing) = checked?;
    report.ledger_check(&target.describe(), &audit, &sealing);
    Ok(if audit.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LEDGER_INVALID)
    })
}

/// `import-sled`: checks that schema ai is current, then imports.
#[cfg(feature = "sled-import")]
async fn import_sled(
    path: &std::path::Path,
    database: &DbConfig,
    require_url: bool,
    json: bool,
    report: &Report,
) -> Result<ExitCode, anyhow::Error> {
    // Dropping the target at the end stops the embedded cluster if this run started it.
    let target = resolve_database(database, require_url).await?;
    let db = connect_when_current(database, &target, "ai").await?;
    let store = ai_store::PgAiStore::start(db.clone(), ai_store::AiConfig::default()).await?;
    let summary = sled_import::import(path, &store, !json).await;
    db.close().await;
    let summary = summary?;
    report.import(&target.describe(), path, &summary);
    Ok(if summary.rejected() > 0 {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}
