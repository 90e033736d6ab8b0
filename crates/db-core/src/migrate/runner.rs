//! The migration runner: ordering of sets, the advisory lock, status and `up`.

use refinery_core::{Runner, Target};
use serde::Serialize;
use sqlx::postgres::PgAdvisoryLock;
use sqlx::{AssertSqlSafe, PgConnection};

use super::driver::SqlxMigrationConnection;
use super::error::MigrateError;
use super::plan::{MigrationInfo, SetStatus};
use super::set::MigrationSet;
use crate::error::DbError;

/// The one advisory lock every migrator of a database takes. refinery takes no lock of its
/// own: without this, migrators started together race on the catalog (duplicate-key errors
/// creating the history table) or apply a migration twice.
pub const MIGRATION_LOCK: &str = "fodi.migrations";

/// Migration sets in dependency order, ready to report on or apply.
#[derive(Debug, Clone)]
pub struct Migrator {
    sets: Vec<MigrationSet>,
}

/// Options of [`Migrator::up`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Apply up to and including this version (needs exactly one set).
    pub target: Option<i32>,
    /// Report what would be applied; change nothing.
    pub dry_run: bool,
}

/// What [`Migrator::up`] did, or in a dry run would do, set by set.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub dry_run: bool,
    pub sets: Vec<SetRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetRun {
    pub set: String,
    pub schema: String,
    /// Migrations that were already applied before this run.
    pub already_applied: usize,
    /// Migrations applied by this run (in a dry run: those that would be).
    pub applied: Vec<MigrationInfo>,
}

impl UpReport {
    /// Migrations applied (or, in a dry run, planned) across all sets.
    pub fn applied_count(&self) -> usize {
        self.sets.iter().map(|set| set.applied.len()).sum()
    }
}

impl Migrator {
    /// Validates the sets and orders them so that each runs after the sets it depends on.
    pub fn new(sets: Vec<MigrationSet>) -> Result<Self, MigrateError> {
        for set in &sets {
            set.validate()?;
        }
        for (index, set) in sets.iter().enumerate() {
            if let Some(other) = sets[..index]
                .iter()
                .find(|other| other.name() == set.name())
            {
                return Err(MigrateError::InvalidSet {
                    set: set.name().to_owned(),
                    reason: format!(
                        "the name is used twice (schemas {} and {})",
                        other.schema(),
                        set.schema()
                    ),
                });
            }
            if let Some(other) = sets[..index]
                .iter()
                .find(|other| other.schema() == set.schema())
            {
                return Err(MigrateError::InvalidSet {
                    set: set.name().to_owned(),
                    reason: format!(
                        "schema {} is already owned by set {}",
                        set.schema(),
                        other.name()
                    ),
                });
            }
        }
        Ok(Self {
            sets: dependency_order(sets)?,
        })
    }

    /// The sets, in the order they are applied.
    pub fn sets(&self) -> &[MigrationSet] {
        &self.sets
    }

    /// A migrator for some of the sets only, still in dependency order. No names: all sets.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<Self, MigrateError> {
        if names.is_empty() {
            return Ok(self.clone());
        }
        if let Some(unknown) = names
            .iter()
            .find(|name| !self.sets.iter().any(|set| set.name() == name.as_ref()))
        {
            return Err(MigrateError::UnknownSet {
                name: unknown.as_ref().to_owned(),
                known: self
                    .sets
                    .iter()
                    .map(MigrationSet::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let sets = self
            .sets
            .iter()
            .filter(|set| names.iter().any(|name| name.as_ref() == set.name()));
        Ok(Self {
            sets: sets.cloned().collect(),
        })
    }

    /// Where each set stands in the database. Read-only: creates no schema and no table.
    pub async fn status(
        &self,
        connection: &mut PgConnection,
    ) -> Result<Vec<SetStatus>, MigrateError> {
        self.status_up_to(connection, None).await
    }

    /// Applies pending migrations set by set, in dependency order, each migration in its own
    /// transaction, while holding the migration advisory lock on `connection`.
    ///
    /// Drift in any selected set refuses the whole run before anything is applied. A failing
    /// migration stops the run: it is rolled back, earlier migrations stay applied, later
    /// ones are not attempted, and the error says which one failed.
    pub async fn up(
        &self,
        connection: &mut PgConnection,
        options: UpOptions,
    ) -> Result<UpReport, MigrateError> {
        if options.target.is_some() && self.sets.len() != 1 {
            return Err(MigrateError::TargetNeedsOneSet {
                count: self.sets.len(),
            });
        }
        let lock = PgAdvisoryLock::new(MIGRATION_LOCK);
        let mut locked = match lock
            .try_acquire(&mut *connection)
            .await
            .map_err(DbError::from)?
        {
            sqlx::Either::Left(guard) => guard,
            sqlx::Either::Right(connection) => {
                let holder = lock_holder(connection, &lock).await;
                tracing::warn!(
                    holder_pid = holder,
                    "another migrator holds the migration lock; waiting for it to finish \
                     (up to the connection's lock_timeout)"
                );
                lock.acquire(connection).await.map_err(DbError::from)?
            }
        };
        // Everything below runs under the lock, so the plan cannot go stale before it runs.
        let result = self.up_locked(locked.as_mut(), options).await;
        locked.release_now().await.map_err(DbError::from)?;
        result
    }

    async fn up_locked(
        &self,
        connection: &mut PgConnection,
        options: UpOptions,
    ) -> Result<UpReport, MigrateError> {
        let statuses = self.status_up_to(connection, options.target).await?;
        let drift: Vec<_> = statuses
            .iter()
            .flat_map(|status| status.drift.iter().cloned())
            .collect();
        if !drift.is_empty() {
            return Err(MigrateError::Drift(drift));
        }
        if let (Some(target), [status]) = (options.target, statuses.as_slice())
            && let Some(latest) = status.applied.iter().map(|m| m.version).max()
            && latest > target
        {
            return Err(MigrateError::TargetBelowApplied {
                set: status.set.clone(),
                applied: latest,
                target,
            });
        }

        let mut runs = Vec::with_capacity(statuses.len());
        for (set, status) in self.sets.iter().zip(statuses) {
            let applied = if options.dry_run || status.pending.is_empty() {
                status.pending.clone()
            } else {
                apply_set(connection, set, &status, options.target).await?
            };
            if !options.dry_run {
                share_history(connection, set).await?;
            }
            if !applied.is_empty() && !options.dry_run {
                tracing::info!(
                    set = set.name(),
                    count = applied.len(),
                    "applied migrations"
                );
            }
            runs.push(SetRun {
                set: status.set,
                schema: status.schema,
                already_applied: status.applied.len(),
                applied,
            });
        }
        Ok(UpReport {
            dry_run: options.dry_run,
            sets: runs,
        })
    }

    async fn status_up_to(
        &self,
        connection: &mut PgConnection,
        target: Option<i32>,
    ) -> Result<Vec<SetStatus>, MigrateError> {
        let mut statuses = Vec::with_capacity(self.sets.len());
        for set in &self.sets {
            let applied = read_history(connection, set).await?;
            statuses.push(SetStatus::compare(set, applied, target));
        }
        Ok(statuses)
    }
}

async fn apply_set(
    connection: &mut PgConnection,
    set: &MigrationSet,
    status: &SetStatus,
    target: Option<i32>,
) -> Result<Vec<MigrationInfo>, MigrateError> {
    let mut runner = Runner::new(set.migrations())
        .set_target(target.map_or(Target::Latest, Target::Version))
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .set_grouped(false);
    runner.set_migration_table_name(set.history_table());

    let mut driver = SqlxMigrationConnection::new(connection);
    match runner.run_async(&mut driver).await {
        Ok(report) => Ok(report
            .applied_migrations()
            .iter()
            .map(MigrationInfo::local)
            .collect()),
        Err(source) => {
            let applied_before: Vec<MigrationInfo> = source
                .report()
                .map(|report| {
                    report
                        .applied_migrations()
                        .iter()
                        .map(MigrationInfo::local)
                        .collect()
                })
                .unwrap_or_default();
            let failed = status
                .pending
                .iter()
                .find(|pending| {
                    !applied_before
                        .iter()
                        .any(|done| done.version == pending.version)
                })
                .map_or_else(|| "<history table>".to_owned(), ToString::to_string);
            Err(MigrateError::Failed {
                set: set.name().to_owned(),
                migration: failed,
                applied_before,
                sqlstate: sqlstate_of(&source),
                cause: innermost_message(&source),
            })
        }
    }
}

/// The server process id of the session holding `lock`, if it can be seen.
async fn lock_holder(connection: &mut PgConnection, lock: &PgAdvisoryLock) -> Option<i32> {
    // A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    // pg_locks lists every database's locks; advisory locks are per database.
    let key = lock.key().as_bigint()?;
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
          LIMIT 1",
    )
    .bind(key)
    .fetch_optional(connection)
    .await
    .ok()
    .flatten()
}

/// The read-only role every schema grants reads to (created by the sets' first migrations).
pub const READ_ONLY_ROLE: &str = "fodi_readonly";

/// Lets [`READ_ONLY_ROLE`] read the set's history table, when both exist: a server running as
/// the run-time roles (not the schemas' owner) can then tell whether its migrations are
/// current. The history table is created before the set's first migration, so the schema's
/// default privileges do not cover it. Idempotent.
async fn share_history(connection: &mut PgConnection, set: &MigrationSet) -> Result<(), DbError> {
    // The table name is built from a validated identifier (see MigrationSet::validate).
    let grant = format!(
        "DO $share$ BEGIN
             IF to_regclass('{table}') IS NOT NULL
                AND EXISTS (SELECT FROM pg_roles WHERE rolname = '{READ_ONLY_ROLE}') THEN
                 GRANT SELECT ON {table} TO {READ_ONLY_ROLE};
             END IF;
         END $share$",
        table = set.history_table()
    );
    sqlx::raw_sql(AssertSqlSafe(grant))
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// The history of one set; empty when its history table does not exist yet.
async fn read_history(
    connection: &mut PgConnection,
    set: &MigrationSet,
) -> Result<Vec<MigrationInfo>, DbError> {
    let table = set.history_table();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *connection)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    // The table name is built from a validated identifier (see MigrationSet::validate).
    let query = format!("SELECT version, name, applied_on, checksum FROM {table} ORDER BY version");
    let rows: Vec<HistoryRow> = sqlx::query_as(AssertSqlSafe(query))
        .fetch_all(&mut *connection)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| MigrationInfo {
            version: row.version,
            name: row.name.unwrap_or_default(),
            checksum: row.checksum.unwrap_or_default(),
            applied_on: row.applied_on,
        })
        .collect())
}

/// A row of refinery's history table, whose text columns are nullable.
#[derive(sqlx::FromRow)]
struct HistoryRow {
    version: i32,
    name: Option<String>,
    applied_on: Option<String>,
    checksum: Option<String>,
}

/// The message of the deepest error in the chain: the server's own words.
fn innermost_message(error: &refinery_core::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn sqlstate_of(error: &refinery_core::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(database_error) = current
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
        {
            return database_error.code().map(|code| code.into_owned());
        }
        source = current.source();
    }
    None
}

/// Orders sets so each comes after the sets it depends on, keeping the given order otherwise.
/// Dependencies on sets that are not present are ignored (they are provided elsewhere).
fn dependency_order(mut remaining: Vec<MigrationSet>) -> Result<Vec<MigrationSet>, MigrateError> {
    let present: Vec<String> = remaining.iter().map(|set| set.name().to_owned()).collect();
    let mut ordered: Vec<MigrationSet> = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|set| {
            set.dependencies().iter().all(|dependency| {
                !present.contains(dependency)
                    || ordered.iter().any(|done| done.name() == dependency)
            })
        });
        match ready {
            Some(index) => ordered.push(remaining.remove(index)),
            None => {
                return Err(MigrateError::DependencyCycle {
                    sets: remaining
                        .iter()
                        .map(MigrationSet::name)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, depends_on: &[&str]) -> MigrationSet {
        MigrationSet::new(name, name, vec![]).depends_on(depends_on)
    }

    fn names(migrator: &Migrator) -> Vec<&str> {
        migrator.sets().iter().map(MigrationSet::name).collect()
    }

    #[test]
    fn dependencies_run_first() {
        let migrator = Migrator::new(vec![
            set("analytics", &["core"]),
            set("ai", &["core"]),
            set("core", &[]),
        ])
        .unwrap();
        assert_eq!(names(&migrator), ["core", "analytics", "ai"]);
    }

    #[test]
    fn an_absent_dependency_is_provided_elsewhere() {
        let migrator = Migrator::new(vec![set("ai", &["core"])]).unwrap();
        assert_eq!(names(&migrator), ["ai"]);
    }

    #[test]
    fn cycles_are_refused() {
        let error = Migrator::new(vec![set("a", &["b"]), set("b", &["a"])]).unwrap_err();
        assert!(
            matches!(error, MigrateError::DependencyCycle { .. }),
            "{error}"
        );
    }

    #[test]
    fn selection_keeps_dependency_order_and_names_unknown_sets() {
        let migrator = Migrator::new(vec![set("ai", &["core"]), set("core", &[])]).unwrap();
        assert_eq!(
            names(&migrator.select(&["ai", "core"]).unwrap()),
            ["core", "ai"]
        );
        let error = migrator.select(&["ledger"]).unwrap_err();
        assert!(error.to_string().contains("core, ai"), "{error}");
    }

    #[test]
    fn two_sets_may_not_share_a_schema() {
        let error = Migrator::new(vec![
            MigrationSet::new("one", "shared", vec![]),
            MigrationSet::new("two", "shared", vec![]),
        ])
        .unwrap_err();
        assert!(matches!(error, MigrateError::InvalidSet { .. }), "{error}");
    }
}
