//! The [`Ledger`] trait: what other crates and services program against.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::amount::Asset;
use crate::error::LedgerError;
use crate::ids::{NftId, TransferId, UserId, WalletId};
use crate::metrics::SealStatus;
use crate::model::{
    Applied, Audit, BatchMode, FeedPage, InvariantReport, Issuance, MintNft, MoveNft, Nft,
    NftMovement, Position, Reward, RewardRequest, Statement, SystemWallet, Transfer,
    TransferRequest, Wallet,
};
use crate::seal::proof::InclusionProof;
use crate::seal::{Block, ChainVerification};

/// The FODI token ledger. Amounts and balances are in units (see [`crate::amount`]).
///
/// Each method runs in a transaction of its own and retries serialisation failures and races
/// between identical requests. To make ledger writes part of a transaction of your own (an
/// order and its payment together), use [`crate::PgLedger::on`] with your connection.
#[async_trait]
pub trait Ledger: Send + Sync {
    // --- wallets ---------------------------------------------------------------------------

    /// The user's wallet of `asset`, created on first use with a minimum balance of zero.
    async fn open_user_wallet(&self, user: UserId, asset: &Asset) -> Result<Wallet, LedgerError>;
    /// The system wallet of `kind` and `asset`, created (sharded) on first use: the issuer
    /// unbounded, the rewards pool and the fees wallet bounded at zero.
    async fn system_wallet(&self, kind: SystemWallet, asset: &Asset)
    -> Result<Wallet, LedgerError>;
    async fn wallet(&self, id: WalletId) -> Result<Wallet, LedgerError>;
    async fn user_wallets(&self, user: UserId) -> Result<Vec<Wallet>, LedgerError>;
    /// Sets the lowest balance a wallet may reach (`None`: unbounded, system wallets only).
    async fn set_min_balance(
        &self,
        wallet: WalletId,
        min_balance: Option<i64>,
    ) -> Result<Wallet, LedgerError>;
    /// Closes an empty wallet; later transfers to or from it fail.
    async fn close_wallet(&self, wallet: WalletId) -> Result<Wallet, LedgerError>;

    // --- transfers -------------------------------------------------------------------------

    /// Applies one transfer, or replays it if its id was applied before.
    async fn transfer(&self, request: TransferRequest) -> Result<Applied, LedgerError>;
    /// Applies up to 10,000 transfers in one round trip. The outer error fails the whole call;
    /// otherwise there is one result per request, in order.
    async fn submit(
        &self,
        requests: Vec<TransferRequest>,
        mode: BatchMode,
    ) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError>;
    /// Creates money, the only way it comes into being: the asset's issuer pays `to` (the
    /// rewards pool before it can pay rewards). Replays like a transfer with the same id.
    async fn issue(&self, request: Issuance) -> Result<Applied, LedgerError>;
    async fn get_transfer(&self, id: TransferId) -> Result<Option<Transfer>, LedgerError>;
    /// Expires up to `limit` holds whose timeout has passed; returns how many.
    async fn expire_holds(&self, limit: u32) -> Result<usize, LedgerError>;
    /// Settles the history written since the previous call, keeping the wallets' checkpoints
    /// that bound what statements and balances at a moment read: up to `max_seqs` sequence
    /// numbers per step, ten steps at most; returns how many it settled. What was written while
    /// a call ran is settled by a later one. Safe to run from several processes at once.
    async fn settle_history(&self, max_seqs: u32) -> Result<u64, LedgerError>;

    // --- history ---------------------------------------------------------------------------

    /// A page of the wallet's entries older than `before` (newest first when `None`);
    /// `limit` is 1 to [`MAX_PAGE`](crate::MAX_PAGE), as for every page of the ledger.
    async fn statement(
        &self,
        wallet: WalletId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Statement, LedgerError>;
    /// The wallet's posted balance as of `at`.
    async fn balance_at(&self, wallet: WalletId, at: DateTime<Utc>) -> Result<i64, LedgerError>;

    // --- rewards ---------------------------------------------------------------------------

    /// Pays a reward from the rewards pool, at most once per `(user, reason, reference)`.
    async fn pay_reward(&self, request: RewardRequest) -> Result<Reward, LedgerError>;
    async fn rewards_of(&self, user: UserId, limit: u32) -> Result<Vec<Reward>, LedgerError>;

    // --- NFTs ------------------------------------------------------------------------------

    async fn mint_nft(&self, request: MintNft) -> Result<Nft, LedgerError>;
    /// Transfers (`to: Some`) or burns (`to: None`) an NFT held by `from`.
    async fn move_nft(&self, request: MoveNft) -> Result<Nft, LedgerError>;
    async fn nft(&self, id: NftId) -> Result<Nft, LedgerError>;
    async fn nfts_of(&self, owner: UserId) -> Result<Vec<Nft>, LedgerError>;
    async fn nft_history(&self, id: NftId) -> Result<Vec<NftMovement>, LedgerError>;

    // --- integrity -------------------------------------------------------------------------

    /// Recomputes the invariants from the whole history (see [`crate::pg::invariants`]).
    async fn check_invariants(&self) -> Result<InvariantReport, LedgerError>;
    /// Seals the next block of final transfers; `None` when there is nothing to seal.
    async fn seal_next_block(&self) -> Result<Option<Block>, LedgerError>;

    /// Seals everything final at this moment, a block at a time, at most `max_blocks` blocks
    /// (so one run of a sealing job stays short); returns how many it sealed. Safe to run
    /// from several processes: one sealer at a time holds the lock.
    async fn seal_final_blocks(&self, max_blocks: u32) -> Result<u32, LedgerError> {
        let mut sealed = 0;
        while sealed < max_blocks && self.seal_next_block().await?.is_some() {
            sealed += 1;
        }
        Ok(sealed)
    }
    async fn blocks(&self, from_height: i64, limit: u32) -> Result<Vec<Block>, LedgerError>;
    /// The newest block's height and the age of the oldest transfer not sealed yet: what a
    /// sealer lagging behind shows ([`SealStatus::record`] exports it).
    async fn seal_status(&self) -> Result<SealStatus, LedgerError>;
    /// Evidence that transfer `id` is in the sealed chain, checkable with
    /// [`crate::seal::proof::verify`] against the hash of the block at `pinned_height` (the
    /// transfer's own block when `None`). `Ok(None)`: no such transfer;
    /// [`LedgerError::NotSealed`]: not in a block yet.
    async fn inclusion_proof(
        &self,
        id: TransferId,
        pinned_height: Option<i64>,
    ) -> Result<Option<InclusionProof>, LedgerError>;
    /// The invariants and the whole sealed chain, recomputed: what a periodic audit and a
    /// check after a restore run.
    async fn audit(&self) -> Result<Audit, LedgerError> {
        Ok(Audit {
            invariants: self.check_invariants().await?,
            chain: self.verify_chain().await?,
        })
    }
    /// Recomputes the chain of blocks and names the first that does not match.
    async fn verify_chain(&self) -> Result<ChainVerification, LedgerError> {
        self.verify_blocks(0, None).await
    }
    /// Recomputes the blocks from `from_height` to `to_height` (the last when `None`), taking
    /// the block before the range as stored: a periodic check goes on where the last stopped.
    async fn verify_blocks(
        &self,
        from_height: i64,
        to_height: Option<i64>,
    ) -> Result<ChainVerification, LedgerError>;

    // --- change feed -----------------------------------------------------------------------

    /// Committed transfers after `after`, in ledger order (see [`crate::pg::feed`]).
    async fn changes_after(&self, after: Position, limit: u32) -> Result<FeedPage, LedgerError>;
    /// The position of the newest final transfer: following the feed from there delivers
    /// what commits from now on.
    async fn feed_head(&self) -> Result<Position, LedgerError>;
    async fn feed_cursor(&self, consumer: &str) -> Result<Position, LedgerError>;
    async fn save_feed_cursor(&self, consumer: &str, position: Position)
    -> Result<(), LedgerError>;
}
