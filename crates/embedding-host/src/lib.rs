//! The shape of another service that embeds the FODI data crates, as
//! `docs/embedding.md` describes it, kept compiling and running by CI:
//!
//! - [`migration_set`]: the host's own migration set (schema `shop`, table `shop.orders`),
//!   migrated beside the crates' sets by one `db_core::migrate::Migrator`;
//! - the example `order_payment` (`cargo run -p embedding-host --example order_payment`):
//!   an order and its payment on the ledger in one transaction of the host's, committed
//!   together, or rolled back together when the payment is refused;
//! - `docs/embedding.md`'s samples, compiled as this crate's doctests, since only a crate
//!   that depends on every data crate can compile them.
//!
//! Nothing here is used by the platform itself: depend on the data crates, not on this one.

use db_core::migrate::MigrationSet;

// The generated module names `refinery::` paths and imports items it does not always use.
#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("migrations/shop");
}

/// The host's set `shop` (schema `shop`), applied after `core`: its orders reference
/// `public.users`.
pub fn migration_set() -> MigrationSet {
    MigrationSet::from_runner("shop", "shop", &embedded::migrations::runner()).depends_on(&["core"])
}

/// `docs/embedding.md`, whose samples are compiled (and the ones without a database run) by
/// `cargo test -p embedding-host --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/embedding.md")]
pub struct EmbeddingGuide;
