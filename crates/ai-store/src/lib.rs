//! The AI assistant's storage: response cache, conversations, memory facts and learning data,
//! in PostgreSQL schema `ai`.
//!
//! This crate owns schema `ai` and ships its migrations ([`migration_set`]); services embed it
//! as a library. It depends on `db-core` only, never on HTTP or on another domain crate.
//! Start reading at [`migration_set`] and `migrations/ai/`.

#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("../../migrations/ai");
}

/// The `ai` migration set: schema `ai`, applied after `core` (its tables reference
/// `public.users`).
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::MigrationSet::from_runner("ai", "ai", &embedded::migrations::runner())
        .depends_on(&["core"])
}
