//! Every failure of the ledger, with the facts a caller needs to act on it.

use db_core::{DbError, RetryableError};

use crate::ids::{NftId, TransferId, UserId, WalletId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    // --- input -----------------------------------------------------------------------------
    #[error("amount must be positive, got {units} units")]
    InvalidAmount { units: i64 },
    #[error("amount out of range: it does not fit in 64-bit units")]
    AmountOutOfRange,
    #[error("{input:?} is not a decimal amount: {reason}")]
    InvalidDecimal { input: String, reason: String },
    #[error("{code:?} is not an asset code (2 to 16 of A-Z and 0-9, starting with a letter)")]
    InvalidAsset { code: String },
    #[error("asset {code} is not one this ledger holds (configured: {configured})")]
    UnknownAsset { code: String, configured: String },
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("a batch holds 1 to {max} transfers, got {size}")]
    BatchSize { size: usize, max: usize },

    // --- wallets ---------------------------------------------------------------------------
    #[error("wallet {0} not found")]
    WalletNotFound(WalletId),
    #[error("wallet {0} is closed")]
    WalletClosed(WalletId),
    #[error(
        "wallet {wallet} still holds {posted} units and {held} units on hold; only an empty wallet can be closed"
    )]
    WalletNotEmpty {
        wallet: WalletId,
        posted: i64,
        held: i64,
    },
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("wallets {debit} and {credit} hold different assets")]
    AssetMismatch { debit: WalletId, credit: WalletId },
    #[error("a transfer needs two different wallets")]
    SameWallet,
    #[error("limit refused for wallet {wallet}: {reason}")]
    LimitNotAllowed { wallet: WalletId, reason: String },
    #[error(
        "wallet {wallet} has {available} units available, less than the requested minimum balance {min_balance}"
    )]
    LimitAboveBalance {
        wallet: WalletId,
        min_balance: i64,
        available: i64,
    },

    // --- transfers -------------------------------------------------------------------------
    #[error("insufficient funds in wallet {wallet}: need {needed} units, {available} available")]
    InsufficientFunds {
        wallet: WalletId,
        needed: i64,
        available: i64,
    },
    #[error("the balance of wallet {wallet} would overflow 64-bit units")]
    Overflow { wallet: WalletId },
    #[error("transfer {id} already exists with different fields")]
    IdConflict { id: TransferId },
    #[error("pending transfer {0} not found")]
    PendingNotFound(TransferId),
    #[error("pending transfer {0} was already posted, voided or expired")]
    PendingAlreadyResolved(TransferId),
    #[error("pending transfer {0} has expired")]
    PendingExpired(TransferId),
    #[error("pending transfer {0} has not expired yet")]
    PendingNotExpired(TransferId),
    #[error("pending transfer {pending} holds {held} units; {requested} cannot be posted")]
    AmountExceedsPending {
        pending: TransferId,
        requested: i64,
        held: i64,
    },
    #[error("wallet {0} holds enough across its shards, but concurrent transfers hold them; retry")]
    ShardsBusy(WalletId),
    #[error("transfer {0} is not sealed in a block yet (or the pinned block does not exist)")]
    NotSealed(TransferId),
    #[error("not applied: another transfer of the linked batch failed")]
    LinkedEventFailed,

    // --- rewards ---------------------------------------------------------------------------
    #[error("user {user} was already rewarded for {reason}/{reference} with other terms")]
    RewardConflict {
        user: UserId,
        reason: String,
        reference: String,
    },

    // --- NFTs ------------------------------------------------------------------------------
    #[error("NFT {0} not found")]
    NftNotFound(NftId),
    #[error("NFT {nft} is not owned by user {claimed_owner}")]
    NftNotOwned { nft: NftId, claimed_owner: UserId },
    #[error("NFT {0} has been burned")]
    NftBurned(NftId),
    #[error("NFT {0} (or that movement id) already exists with different fields")]
    NftConflict(NftId),

    // --- the database ----------------------------------------------------------------------
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database answered in a way this crate does not know: a build whose migrations do
    /// not match the database's. Never the caller's fault.
    #[error("unexpected answer from the ledger's database functions: {0}")]
    UnexpectedResult(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(DbError::from(error))
    }
}

impl LedgerError {
    /// A rule of the ledger refused the request (bad input, a missing wallet, too little
    /// money, ...), as opposed to the database failing to answer ([`Self::Db`],
    /// [`Self::UnexpectedResult`]).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Db(_) | Self::UnexpectedResult(_))
    }
}

impl RetryableError for LedgerError {
    /// Retryable: what the database says can be retried, and a unique-key race on a transfer
    /// id or on a hold's resolution, where two submits of the same thing met; the retry finds
    /// the winner's row and replays it (or reports the conflict).
    fn is_retryable(&self) -> bool {
        match self {
            Self::Db(DbError::UniqueViolation { constraint, .. }) => matches!(
                constraint.as_str(),
                "fodi_transactions_pkey"
                    | "fodi_transactions_pending_resolved_once"
                    | "reward_history_once"
                    | "nft_metadata_pkey"
                    | "nft_transfers_pkey"
                    | "wallets_user_asset_key"
                    | "wallets_system_kind_asset_key"
            ),
            Self::Db(error) => error.is_retryable(),
            Self::ShardsBusy(_) => true,
            _ => false,
        }
    }
}
