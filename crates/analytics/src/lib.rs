//! Product analytics: metrics and events recorded in batches, time-bucketed queries, and the
//! `daily_stats` rollup, in PostgreSQL schema `analytics`.
//!
//! This crate owns schema `analytics` and ships its migrations ([`migration_set`]); services
//! embed it as a library. It depends on `db-core` only, never on HTTP or on another domain
//! crate. Start reading at [`migration_set`] and `migrations/analytics/`.

#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("../../migrations/analytics");
}

/// The `analytics` migration set. It references no other schema: events keep user ids as
/// plain values, so analytics can be migrated (and kept) independently of the core backend.
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::MigrationSet::from_runner(
        "analytics",
        "analytics",
        &embedded::migrations::runner(),
    )
}
