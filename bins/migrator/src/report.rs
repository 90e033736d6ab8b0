//! Rendering of outcomes: lines of text for people, one JSON document for machines.
//!
//! Results go to stdout; with `--json` errors do too (as `{"error": ...}`), so a CI job
//! parses one stream. Without `--json`, errors go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use db_core::DbError;
use db_core::migrate::{MigrateError, SetStatus, UpReport};
use serde_json::{Value, json};

#[cfg(feature = "sled-import")]
use crate::sled_import::ImportSummary;

pub struct Report {
    json: bool,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn up(&self, database: &str, outcome: &UpReport) {
        if self.json {
            let mut document = serde_json::to_value(outcome).unwrap_or(Value::Null);
            document["database"] = json!(database);
            document["applied_count"] = json!(outcome.applied_count());
            println!("{document}");
            return;
        }
        let verb = if outcome.dry_run {
            "would apply"
        } else {
            "applied"
        };
        for set in &outcome.sets {
            for migration in &set.applied {
                println!("{verb} {} {migration}", set.set);
            }
        }
        match (outcome.applied_count(), outcome.dry_run) {
            (0, _) => println!("{database}: nothing to apply; every selected set is current"),
            (count, true) => println!(
                "{database}: dry run, {count} migration(s) would be applied; nothing changed"
            ),
            (count, false) => println!("{database}: {count} migration(s) applied"),
        }
    }

    pub fn status(&self, database: &str, statuses: &[SetStatus], verify: bool) {
        let current = statuses.iter().all(SetStatus::is_current);
        if self.json {
            println!(
                "{}",
                json!({ "database": database, "current": current, "sets": statuses })
            );
            return;
        }
        println!("{database}");
        for status in statuses {
            println!(
                "set {} (schema {}): {} applied, {} pending, {} drifted",
                status.set,
                status.schema,
                status.applied.len(),
                status.pending.len(),
                status.drift.len()
            );
            if !verify {
                for migration in &status.applied {
                    println!(
                        "  applied  {migration}  {}",
                        migration.applied_on.as_deref().unwrap_or("")
                    );
                }
            }
            for migration in &status.pending {
                println!("  pending  {migration}");
            }
            for drift in &status.drift {
                println!("  DRIFT    {drift}");
            }
            for migration in &status.ahead {
                println!("  ahead    {migration}  (applied by a newer build)");
            }
        }
        if verify {
            if current {
                println!("verify: ok, every selected set is current");
            } else {
                println!(
                    "verify: NOT current; pending migrations need `migrator up`, drift needs a new migration"
                );
            }
        }
    }

    #[cfg(feature = "sled-import")]
    pub fn import(&self, database: &str, path: &std::path::Path, summary: &ImportSummary) {
        if self.json {
            let mut document = serde_json::to_value(summary).unwrap_or(Value::Null);
            document["database"] = json!(database);
            document["path"] = json!(path.display().to_string());
            println!("{document}");
            return;
        }
        println!("imported {} into {database}", path.display());
        for (tree, counts) in &summary.trees {
            println!(
                "  {tree:<13} {} read, {} written, {} skipped, {} rejected",
                counts.read, counts.written, counts.skipped, counts.rejected
            );
            for (reason, count) in &counts.reasons {
                println!("  {:<13}   {count} {reason}", "");
            }
        }
        for tree in &summary.ignored_trees {
            println!("  tree {tree:?} is not part of the import; left alone");
        }
        if !summary.rejections.is_empty() {
            println!("rejected records (the first {}):", summary.rejections.len());
            for rejection in &summary.rejections {
                println!(
                    "  {} {:?}: {}",
                    rejection.tree, rejection.key, rejection.reason
                );
            }
        }
    }

    pub fn ledger_check(
        &self,
        database: &str,
        audit: &ledger::Audit,
        sealing: &ledger::SealStatus,
    ) {
        let ledger::Audit { invariants, chain } = audit;
        let valid = audit.is_ok();
        if self.json {
            let document = json!({
                "database": database,
                "valid": valid,
                "invariants": invariants,
                "chain": chain,
                "newest_block": sealing.height,
                "unsealed_since": sealing.oldest_unsealed_at,
            });
            println!("{document}");
            return;
        }
        println!(
            "{database}: {} transfers in {} wallets and {} assets; {} violation(s)",
            invariants.transfers,
            invariants.wallets,
            invariants.assets,
            invariants.violations.len()
        );
        for violation in &invariants.violations {
            println!("  violation: {violation:?}");
        }
        match &chain.first_invalid {
            None => println!(
                "{database}: {} blocks intact, covering {} transfers",
                chain.blocks_checked, chain.transfers_checked
            ),
            Some(invalid) => println!(
                "{database}: block {} does not match: {:?}",
                invalid.height, invalid.problem
            ),
        }
        if let Some(since) = sealing.oldest_unsealed_at {
            println!(
                "{database}: transfers since {since} are not sealed yet (not covered by the chain)"
            );
        }
        println!(
            "{database}: the ledger is {}",
            if valid { "valid" } else { "NOT valid" }
        );
    }

    pub fn error(&self, error: &anyhow::Error) {
        let kind = error_kind(error);
        if self.json {
            let mut body = json!({ "kind": kind, "message": format!("{error:#}") });
            match error.downcast_ref::<MigrateError>() {
                Some(MigrateError::Drift(drift)) => body["drift"] = json!(drift),
                Some(MigrateError::Failed {
                    set,
                    migration,
                    applied_before,
                    sqlstate,
                    ..
                }) => {
                    body["set"] = json!(set);
                    body["migration"] = json!(migration);
                    body["applied_before"] = json!(applied_before);
                    body["sqlstate"] = json!(sqlstate);
                }
                _ => {}
            }
            println!("{}", json!({ "error": body }));
            return;
        }
        eprintln!("error: {error:#}");
        if let Some(hint) = hint(kind) {
            eprintln!("hint: {hint}");
        }
    }
}

fn db_error(error: &anyhow::Error) -> Option<&DbError> {
    error
        .downcast_ref::<DbError>()
        .or_else(|| match error.downcast_ref::<MigrateError>() {
            Some(MigrateError::Db(db)) => Some(db),
            _ => None,
        })
}

/// A stable, machine-readable name for what went wrong.
fn error_kind(error: &anyhow::Error) -> &'static str {
    if let Some(db) = db_error(error) {
        return match db {
            DbError::Unreachable { .. } => "unreachable",
            DbError::TlsFailed { .. } => "tls_failed",
            DbError::AuthenticationFailed { .. } => "authentication_failed",
            DbError::DatabaseMissing { .. } => "database_missing",
            DbError::LocalCluster(_) => "local_cluster",
            DbError::InvalidConfig { .. } => "invalid_config",
            DbError::PermissionDenied { .. } => "permission_denied",
            _ => "database",
        };
    }
    match error.downcast_ref::<MigrateError>() {
        Some(MigrateError::Drift(_)) => "drift",
        Some(MigrateError::Failed { .. }) => "migration_failed",
        Some(
            MigrateError::UnknownSet { .. }
            | MigrateError::TargetNeedsOneSet { .. }
            | MigrateError::TargetBelowApplied { .. },
        ) => "invalid_arguments",
        Some(_) => "invalid_migrations",
        None if error.downcast_ref::<app_config::ConfigError>().is_some() => "invalid_config",
        None => "other",
    }
}

fn hint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "unreachable" => {
            "is the server running, and is the address right? The database comes from --database-url, \
             DATABASE_URL, FODI__DATABASE__URL or database.url in fodi.toml"
        }
        "authentication_failed" => "check the user name and password in the database URL",
        "database_missing" => "create the database first (createdb NAME) or correct the URL",
        "drift" => {
            "restore the released migration files exactly as they were applied, or use the build \
             that applied them; changes go in a new migration with a higher version"
        }
        "migration_failed" => {
            "fix the failing migration and run `migrator up` again; nothing of it was kept"
        }
        _ => return None,
    })
}
