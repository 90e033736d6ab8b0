//! The FODI token ledger: wallets, transfers, pending transfers (holds), batches, rewards,
//! NFTs, statements, sealed blocks and a change feed, in PostgreSQL schema `blockchain`.
//!
//! The semantics are TigerBeetle's, on plain PostgreSQL: client-chosen transfer ids (a retry
//! never applies twice), wallets that never go below their bound (only the issuer is unbounded:
//! money exists only by [`Ledger::issue`]), double entry (every asset sums to zero), holds that are posted, voided or
//! expire, linked (all-or-nothing) and independent batches, and locks taken in one global
//! order so that concurrent calls never deadlock. Transfers are applied by one PL/pgSQL
//! function per call (`migrations/blockchain/V2__transfer_engine.sql`, the batch function as
//! replaced by `V3__batch_lock_order.sql` and `V4__bounded_system_wallets.sql`): one round trip per
//! transfer or per batch. Money is integer units throughout ([`amount`]).
//!
//! Start at the [`Ledger`] trait and its implementation [`PgLedger`]; [`PgLedger::on`] runs the
//! same operations inside a caller's own transaction.
//!
//! Architecture invariant: this crate owns schema `blockchain` and ships its migrations
//! ([`migration_set`]); it depends on `db-core` only, never on HTTP or another domain crate.

pub mod amount;
mod api;
mod error;
mod ids;
pub mod maintenance;
pub mod metrics;
mod model;
pub mod pg;
pub mod seal;

pub use amount::{Amount, Asset, TokenAmount};
pub use api::Ledger;
pub use error::LedgerError;
pub use ids::{NftId, NftTransferId, TransferId, UserId, WalletId};
pub use metrics::SealStatus;
pub use model::{
    Applied, Audit, BatchMode, FeedPage, Instruction, InvariantReport, Issuance, MAX_HOLD_TIMEOUT,
    MintNft, MoveNft, Nft, NftMovement, Position, Reward, RewardRequest, Statement, StatementEntry,
    SystemWallet, Transfer, TransferDetails, TransferKind, TransferRequest, Violation, Wallet,
    WalletOwner,
};
pub use pg::feed::follow as follow_feed;
pub use pg::issuance::ISSUANCE_REASON;
pub use pg::rewards::reward_transfer_id;
pub use pg::{LedgerConfig, LedgerConn, MAX_BATCH, MAX_PAGE, PgLedger};
pub use seal::proof::{InclusionProof, ProofError};
pub use seal::{Block, BlockProblem, ChainVerification, InvalidBlock};

/// The ledger's trait, for one `use ledger::prelude::*;` (its methods need it in scope).
pub mod prelude {
    pub use crate::Ledger;
}

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

/// `docs/ledger.md`, whose samples `cargo test -p ledger --doc` compiles.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ledger.md")]
pub struct Guide;
