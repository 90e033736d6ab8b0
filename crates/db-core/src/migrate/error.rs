//! What can go wrong while planning or applying migrations.

use super::plan::{Drift, MigrationInfo};
use crate::error::DbError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Reading history, taking the lock or connecting failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A set that cannot be run safely (bad names, repeated versions).
    #[error("migration set {set} is invalid: {reason}")]
    InvalidSet { set: String, reason: String },
    /// `--set` named a set this build does not have.
    #[error("unknown migration set {name:?}; this build has: {known}")]
    UnknownSet { name: String, known: String },
    /// Sets depend on each other in a circle, so no order works.
    #[error("migration sets depend on each other in a cycle: {sets}")]
    DependencyCycle { sets: String },
    /// A target version is a version of one set; with several sets it would be ambiguous.
    #[error("a target version needs exactly one set (--set NAME); {count} sets were selected")]
    TargetNeedsOneSet { count: usize },
    /// Migrations are never reverted, so a target below what is applied cannot be reached.
    #[error(
        "set {set} is already at V{applied}; target V{target} would need a revert, which migrations never do"
    )]
    TargetBelowApplied {
        set: String,
        applied: i32,
        target: i32,
    },
    /// The database and this build disagree about released migrations; nothing was applied.
    #[error("{}", describe_drift(.0))]
    Drift(Vec<Drift>),
    /// A migration failed. Its own transaction rolled back, so the set stands exactly as after
    /// the last migration that succeeded; later migrations were not attempted.
    #[error("migration {migration} of set {set} failed and was rolled back: {cause}")]
    Failed {
        set: String,
        migration: String,
        /// Migrations of the same set applied by this run before the failure.
        applied_before: Vec<MigrationInfo>,
        /// SQLSTATE of the database error, when the failure came from the server.
        sqlstate: Option<String>,
        /// What the server (or the driver) said, once: refinery's error repeats it at each
        /// level of its chain, so the chain is not kept.
        cause: String,
    },
}

fn describe_drift(drift: &[Drift]) -> String {
    let mut text = String::from(
        "the database has drifted from the migrations of this build; nothing was applied. \
         Released migrations must never change: add a new migration instead.",
    );
    for item in drift {
        text.push_str("\n  - ");
        text.push_str(&item.to_string());
    }
    text
}
