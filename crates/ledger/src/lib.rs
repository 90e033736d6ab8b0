//! The FODI token ledger: wallets, transfers, pending transfers, NFTs, rewards and sealed
//! blocks, in PostgreSQL schema `blockchain`.
//!
//! This crate owns schema `blockchain` and ships its migrations ([`migration_set`]); services
//! embed it as a library. It depends on `db-core` only, never on HTTP or on another domain
//! crate. Start reading at [`migration_set`] and `migrations/blockchain/`.

#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("../../migrations/blockchain");
}

/// The `blockchain` migration set, applied after `core` (wallets and rewards reference
/// `public.users` and `public.orders`).
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::MigrationSet::from_runner(
        "blockchain",
        "blockchain",
        &embedded::migrations::runner(),
    )
    .depends_on(&["core"])
}
