//! Migrations: one set per schema owner, applied by refinery over a sqlx connection.
//!
//! Start at [`Migrator`]: it orders [`MigrationSet`]s by their dependencies, reports
//! [`SetStatus`] read-only, and applies pending migrations under a PostgreSQL advisory lock so
//! that migrators started at the same moment apply each migration exactly once.

mod driver;
mod error;
mod plan;
mod runner;
mod set;

pub use error::MigrateError;
pub use plan::{Drift, DriftKind, MigrationInfo, SetStatus};
pub use runner::{MIGRATION_LOCK, Migrator, SetRun, UpOptions, UpReport};
pub use set::MigrationSet;

/// Re-exported so callers can build migrations in memory (`Migration::unapplied`).
pub use refinery_core::Migration;

// The generated module names `refinery::` paths and imports items it does not always use.
#[allow(unused_imports, clippy::all)]
mod embedded_core {
    refinery::embed_migrations!("../../migrations/core");
}

/// The `core` set: the tables of the core backend in schema `public` (users, businesses,
/// products, orders, order_items), which every other set references.
///
/// Deployments whose core backend owns `public` leave this set out; sets that depend on it
/// then run on the tables the backend provides.
pub fn core_set() -> MigrationSet {
    MigrationSet::from_runner("core", "public", &embedded_core::migrations::runner())
}
