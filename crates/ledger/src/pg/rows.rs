//! Rows as the queries of this crate read them, and their conversion into the model.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::amount::{Amount, Asset};
use crate::error::LedgerError;
use crate::ids::{TransferId, UserId, WalletId};
use crate::model::{Position, SystemWallet, Transfer, TransferKind, Wallet, WalletOwner};

/// The columns every wallet query selects (see [`WALLET_COLUMNS`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WalletRow {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub kind: String,
    pub asset: String,
    pub shard_count: i16,
    pub posted: i64,
    pub pending_debits: i64,
    pub pending_credits: i64,
    pub min_balance: Option<i64>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A wallet with its balances summed over shards; append `WHERE ... GROUP BY w.id`.
pub(crate) const WALLET_COLUMNS: &str = "SELECT w.id, w.user_id, w.kind, w.asset, w.shard_count, \
     sum(b.posted)::bigint AS posted, sum(b.pending_debits)::bigint AS pending_debits, \
     sum(b.pending_credits)::bigint AS pending_credits, max(b.min_balance) AS min_balance, \
     w.closed_at, w.created_at \
     FROM blockchain.wallets w JOIN blockchain.balances b ON b.wallet_id = w.id";

impl TryFrom<WalletRow> for Wallet {
    type Error = LedgerError;

    fn try_from(row: WalletRow) -> Result<Self, Self::Error> {
        let owner = match (row.kind.as_str(), row.user_id) {
            ("user", Some(user)) => WalletOwner::User(UserId(user)),
            ("issuer", None) => WalletOwner::System(SystemWallet::Issuer),
            ("rewards_pool", None) => WalletOwner::System(SystemWallet::RewardsPool),
            ("fees", None) => WalletOwner::System(SystemWallet::Fees),
            (kind, _) => {
                return Err(LedgerError::UnexpectedResult(format!(
                    "wallet kind {kind:?}"
                )));
            }
        };
        Ok(Wallet {
            id: WalletId(row.id),
            owner,
            asset: Asset::new(row.asset)?,
            shard_count: row.shard_count,
            posted: row.posted,
            pending_debits: row.pending_debits,
            pending_credits: row.pending_credits,
            min_balance: row.min_balance,
            closed_at: row.closed_at,
            created_at: row.created_at,
        })
    }
}

/// A row of `blockchain.fodi_transactions` (see [`TRANSFER_COLUMNS`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TransferRow {
    pub id: Uuid,
    pub tx_id: i64,
    pub seq: i64,
    pub kind: String,
    pub debit_wallet_id: Uuid,
    pub credit_wallet_id: Uuid,
    pub amount: i64,
    pub pending_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// The metadata as PostgreSQL prints it: the canonical text the sealer hashes.
    pub metadata_text: Option<String>,
    pub created_at: DateTime<Utc>,
    pub submitted_by: Option<String>,
}

/// Every column of a stored transfer, for `SELECT ... FROM blockchain.fodi_transactions t`.
pub(crate) const TRANSFER_COLUMNS: &str = "t.id, t.tx_id, t.seq, t.kind, t.debit_wallet_id, t.credit_wallet_id, \
     t.amount, t.pending_id, t.expires_at, t.reason, t.reference, t.metadata, t.metadata::text AS metadata_text, \
     t.created_at, t.submitted_by";

impl TryFrom<TransferRow> for Transfer {
    type Error = LedgerError;

    fn try_from(row: TransferRow) -> Result<Self, Self::Error> {
        let kind = TransferKind::parse(&row.kind).ok_or_else(|| {
            LedgerError::UnexpectedResult(format!("transfer kind {:?}", row.kind))
        })?;
        Ok(Transfer {
            id: TransferId(row.id),
            position: Position {
                tx_id: row.tx_id,
                seq: row.seq,
            },
            kind,
            debit_wallet: WalletId(row.debit_wallet_id),
            credit_wallet: WalletId(row.credit_wallet_id),
            amount: Amount::new(row.amount)?,
            pending_id: row.pending_id.map(TransferId),
            expires_at: row.expires_at,
            reason: row.reason,
            reference: row.reference,
            metadata: row.metadata,
            created_at: row.created_at,
            submitted_by: row.submitted_by,
        })
    }
}
