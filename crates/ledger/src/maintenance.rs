//! The ledger's background work, a bounded run at a time: what a host calls on its intervals
//! (the api-server's `ledger_sealer`, `hold_expiry`, `history_settler` and `ledger_audit`
//! jobs). Each run is bounded so that it stays short after a backlog; the next run takes what
//! it left. Every run is safe from several processes at once.

use crate::{Audit, Ledger, LedgerError};

/// Blocks one sealing run seals at most.
pub const SEALED_BLOCKS_PER_RUN: u32 = 100;

/// Holds one expiry run releases at most (one batch of the engine).
pub const EXPIRED_HOLDS_PER_RUN: u32 = 1_000;

/// Sequence numbers one step of history settling settles at most (ten steps per run).
pub const SETTLED_SEQS_PER_STEP: u32 = 50_000;

/// Seals what is final, [`SEALED_BLOCKS_PER_RUN`] blocks at most, then exports the seal
/// status ([`crate::SealStatus::record`]); returns the blocks sealed.
pub async fn seal(ledger: &dyn Ledger) -> Result<u32, LedgerError> {
    let sealed = ledger.seal_final_blocks(SEALED_BLOCKS_PER_RUN).await?;
    ledger.seal_status().await?.record();
    Ok(sealed)
}

/// Releases lapsed holds, [`EXPIRED_HOLDS_PER_RUN`] at most; returns how many.
pub async fn expire_holds(ledger: &dyn Ledger) -> Result<usize, LedgerError> {
    ledger.expire_holds(EXPIRED_HOLDS_PER_RUN).await
}

/// Settles the history written since the last run into the wallets' checkpoints; returns the
/// sequence numbers settled.
pub async fn settle_history(ledger: &dyn Ledger) -> Result<u64, LedgerError> {
    ledger.settle_history(SETTLED_SEQS_PER_STEP).await
}

/// Recomputes the invariants and verifies the sealed chain, exports what was found
/// ([`crate::metrics::record_audit`]), and returns it: [`Audit::verdict`] says whether the
/// run passed.
pub async fn audit(ledger: &dyn Ledger) -> Result<Audit, LedgerError> {
    let audit = ledger.audit().await?;
    crate::metrics::record_audit(&audit);
    Ok(audit)
}
