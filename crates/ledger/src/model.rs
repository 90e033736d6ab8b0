//! The ledger's values, the types the [`crate::Ledger`] trait speaks: wallets, transfer
//! requests and stored transfers, statements, NFTs, rewards, the invariant report and the
//! change feed's pages. The `pg` modules read and write them; nothing here knows SQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::amount::{Amount, Asset};
use crate::error::LedgerError;
use crate::ids::{NftId, NftTransferId, TransferId, UserId, WalletId};

/// The system roles that own wallets of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SystemWallet {
    /// Where tokens come from: its balance is minus what circulates.
    Issuer,
    /// Pays rewards to users.
    RewardsPool,
    /// Collects fees.
    Fees,
}

impl SystemWallet {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::RewardsPool => "rewards_pool",
            Self::Fees => "fees",
        }
    }
}

/// A system wallet by the name its JSON gives it (`issuer`, `rewards_pool`, `fees`).
impl std::str::FromStr for SystemWallet {
    type Err = LedgerError;

    fn from_str(name: &str) -> Result<Self, LedgerError> {
        [Self::Issuer, Self::RewardsPool, Self::Fees]
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| LedgerError::InvalidField {
                field: "system_wallet",
                reason: "issuer, rewards_pool or fees".into(),
            })
    }
}

/// Who a wallet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum WalletOwner {
    User(UserId),
    System(SystemWallet),
}

/// A wallet and its balances (summed over its shards), in units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Wallet {
    pub id: WalletId,
    pub owner: WalletOwner,
    pub asset: Asset,
    /// Balance rows the wallet is spread over (see `blockchain.wallets.shard_count`).
    pub shard_count: i16,
    /// Posted balance (units; a string in JSON, see [`crate::amount::units_text`]).
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub posted: i64,
    /// Held by open pending transfers that debit this wallet.
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub pending_debits: i64,
    /// Promised by open pending transfers that credit this wallet.
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub pending_credits: i64,
    /// Lowest allowed `posted - pending_debits`; `None` means unbounded (only the issuer). A
    /// sharded wallet holds it on each of its balance rows.
    #[serde(with = "crate::amount::units_text::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^-?[0-9]{1,19}$"))]
    pub min_balance: Option<i64>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Wallet {
    /// Posted balance minus holds.
    pub fn available(&self) -> i64 {
        self.posted.saturating_sub(self.pending_debits)
    }

    /// What a transfer may take now: `available - min_balance`, or `None` when unbounded.
    pub fn spendable(&self) -> Option<i64> {
        self.min_balance
            .map(|min| self.available().saturating_sub(min).max(0))
    }
}

/// The longest a hold may reserve funds before it lapses: funds are not frozen for ever by
/// a hold nobody resolves.
pub const MAX_HOLD_TIMEOUT: Duration = Duration::from_secs(366 * 86_400);

/// What a transfer request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Instruction {
    /// Move `amount` from `debit` to `credit` now.
    Transfer {
        debit: WalletId,
        credit: WalletId,
        amount: Amount,
    },
    /// Reserve `amount` of `debit`'s funds for `credit` until posted, voided, or `timeout`.
    Hold {
        debit: WalletId,
        credit: WalletId,
        amount: Amount,
        #[serde(with = "duration_millis")]
        timeout: Duration,
    },
    /// Post a hold: move `amount` (all of the hold when `None`) and release the rest.
    Post {
        pending: TransferId,
        amount: Option<Amount>,
    },
    /// Release a hold without moving anything.
    Void { pending: TransferId },
}

/// Free-form facts stored with a transfer: what it is for and what it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferDetails {
    /// What the transfer is for ("purchase", "reward", ...): 1 to 64 characters.
    pub reason: Option<String>,
    /// The business object it belongs to (an order id, ...): 1 to 256 characters.
    pub reference: Option<String>,
    /// Anything else, as a JSON object.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Who submitted it (an API caller's name): 1 to 100 characters. Recorded, never part of
    /// what makes a resubmission a replay.
    #[serde(default)]
    pub submitted_by: Option<String>,
}

/// One transfer to submit. The id is the idempotency key: submitting the same request again
/// returns the stored transfer; the same id with other fields is [`LedgerError::IdConflict`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub id: TransferId,
    pub instruction: Instruction,
    #[serde(default)]
    pub details: TransferDetails,
}

impl TransferRequest {
    /// An immediate transfer with a new id.
    pub fn transfer(debit: WalletId, credit: WalletId, amount: Amount) -> Self {
        Self::new(Instruction::Transfer {
            debit,
            credit,
            amount,
        })
    }

    /// A hold (pending transfer) with a new id.
    pub fn hold(debit: WalletId, credit: WalletId, amount: Amount, timeout: Duration) -> Self {
        Self::new(Instruction::Hold {
            debit,
            credit,
            amount,
            timeout,
        })
    }

    /// Posting of a hold, wholly (`None`) or partly, with a new id.
    pub fn post(pending: TransferId, amount: Option<Amount>) -> Self {
        Self::new(Instruction::Post { pending, amount })
    }

    /// Voiding of a hold, with a new id.
    pub fn void(pending: TransferId) -> Self {
        Self::new(Instruction::Void { pending })
    }

    fn new(instruction: Instruction) -> Self {
        Self {
            id: TransferId::new(),
            instruction,
            details: TransferDetails::default(),
        }
    }

    #[must_use]
    pub fn with_id(mut self, id: TransferId) -> Self {
        self.id = id;
        self
    }

    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.details.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.details.reference = Some(reference.into());
        self
    }

    #[must_use]
    pub fn submitted_by(mut self, submitter: impl Into<String>) -> Self {
        self.details.submitted_by = Some(submitter.into());
        self
    }

    #[must_use]
    pub fn with_metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.details.metadata = Some(metadata);
        self
    }

    /// Checks the request's own fields (reason and reference lengths, the hold's timeout),
    /// which need no database; submitting checks them too. A batch checked up front is
    /// refused whole for a malformed item instead of answering it item by item.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let details = &self.details;
        check_length("reason", details.reason.as_deref(), 64)?;
        check_length("reference", details.reference.as_deref(), 256)?;
        check_length("submitted_by", details.submitted_by.as_deref(), 100)?;
        if let Instruction::Hold { timeout, .. } = &self.instruction
            && (timeout.as_millis() == 0 || *timeout > MAX_HOLD_TIMEOUT)
        {
            return Err(LedgerError::InvalidField {
                field: "timeout",
                reason: "must be 1 millisecond to 366 days".into(),
            });
        }
        Ok(())
    }
}

fn check_length(field: &'static str, value: Option<&str>, max: usize) -> Result<(), LedgerError> {
    match value {
        Some(text) if text.is_empty() || text.chars().count() > max => {
            Err(LedgerError::InvalidField {
                field,
                reason: format!("must be 1 to {max} characters"),
            })
        }
        _ => Ok(()),
    }
}

/// Money created: the asset's issuer pays `to` (see [`crate::Ledger::issue`]). The id makes
/// it idempotent like a transfer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    pub id: TransferId,
    pub to: WalletId,
    pub amount: Amount,
    /// What it is for (a treasury decision, ...): 1 to 256 characters.
    pub reference: Option<String>,
    /// Who asked for it (see [`TransferDetails::submitted_by`]).
    pub submitted_by: Option<String>,
}

impl Issuance {
    /// Issuance of `amount` to `to`, with a new id.
    pub fn new(to: WalletId, amount: Amount) -> Self {
        Self {
            id: TransferId::new(),
            to,
            amount,
            reference: None,
            submitted_by: None,
        }
    }

    #[must_use]
    pub fn with_id(mut self, id: TransferId) -> Self {
        self.id = id;
        self
    }

    #[must_use]
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    #[must_use]
    pub fn submitted_by(mut self, submitter: impl Into<String>) -> Self {
        self.submitted_by = Some(submitter.into());
        self
    }
}

/// How the items of a batch relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// All items apply, or none does.
    Linked,
    /// Each item applies or fails on its own.
    Independent,
}

/// The kind of a stored transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Transfer,
    Pending,
    Post,
    Void,
    Expire,
}

impl TransferKind {
    pub const ALL: [Self; 5] = [
        Self::Transfer,
        Self::Pending,
        Self::Post,
        Self::Void,
        Self::Expire,
    ];

    /// Its name, as stored (`blockchain.fodi_transactions.kind`) and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Pending => "pending",
            Self::Post => "post",
            Self::Void => "void",
            Self::Expire => "expire",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether it changes posted balances (rather than holds only).
    pub fn moves_funds(self) -> bool {
        matches!(self, Self::Transfer | Self::Post)
    }
}

/// A transfer's place in the ledger's total order: its transaction, then its insertion
/// order. Positions below the oldest running transaction never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Position {
    pub tx_id: i64,
    pub seq: i64,
}

impl Position {
    /// Before every transfer.
    pub const START: Self = Self { tx_id: 0, seq: 0 };
}

/// A stored transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transfer {
    pub id: TransferId,
    pub position: Position,
    pub kind: TransferKind,
    pub debit_wallet: WalletId,
    pub credit_wallet: WalletId,
    /// Transfer or hold: the amount; post: the amount posted; void or expiry: the hold released.
    pub amount: Amount,
    /// Post, void or expiry: the hold it resolves.
    pub pending_id: Option<TransferId>,
    /// Hold: when it lapses unless posted or voided.
    pub expires_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// Who submitted it, when the submitter named itself (the API records its caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<String>,
}

/// A submitted transfer as the ledger holds it, and whether this submit was a replay of an
/// earlier one with the same id (nothing applied again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    pub transfer: Transfer,
    pub replayed: bool,
}

/// A page of a wallet's history, newest first, with the posted balance after each entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    pub wallet: WalletId,
    pub entries: Vec<StatementEntry>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementEntry {
    pub transfer_id: TransferId,
    pub seq: i64,
    pub kind: TransferKind,
    /// The other wallet of the transfer.
    pub counterparty: WalletId,
    /// The transfer's amount, positive when this wallet is credited (units, as a string).
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub amount: i64,
    /// Change of the posted balance (zero for holds, voids and expiries).
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub posted_change: i64,
    /// Posted balance right after this entry.
    #[serde(with = "crate::amount::units_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^-?[0-9]{1,19}$"))]
    pub balance_after: i64,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

// --- NFTs --------------------------------------------------------------------------------

/// An NFT to mint (deserialises from a request body; a new id when none is given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MintNft {
    /// Chosen by the client: minting the same NFT again returns it.
    #[serde(default)]
    pub id: NftId,
    pub owner: UserId,
    /// 1 to 100 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub collection: String,
    /// 1 to 2,048 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 2048))]
    pub token_uri: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A movement of an NFT from its owner to another user (`to: Some`) or into the void (burn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveNft {
    /// The movement's id: the same request again is answered from the record.
    pub id: NftTransferId,
    pub nft: NftId,
    /// Who the caller says owns it now; the move fails unless that is true.
    pub from: UserId,
    /// The new owner; `None` burns the NFT.
    pub to: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nft {
    pub id: NftId,
    /// `None` once burned.
    pub owner: Option<UserId>,
    pub collection: String,
    pub token_uri: Option<String>,
    pub metadata: serde_json::Value,
    pub minted_at: DateTime<Utc>,
    pub burned_at: Option<DateTime<Utc>>,
}

/// One recorded movement: a mint has no `from`, a burn no `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NftMovement {
    pub id: NftTransferId,
    pub nft: NftId,
    pub from: Option<UserId>,
    pub to: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

// --- rewards -----------------------------------------------------------------------------
/// A reward to pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRequest {
    pub user: UserId,
    /// Why (1 to 64 characters): "first_order", "review", ...
    pub reason: String,
    /// What for (1 to 256 characters): an order id, a campaign, ...
    pub reference: String,
    pub amount: Amount,
    pub asset: Asset,
    /// The order it rewards, when there is one (`public.orders.id`).
    pub order_id: Option<Uuid>,
    /// Who asked for it, recorded on its transfer (see [`TransferDetails::submitted_by`]).
    #[serde(default)]
    pub submitted_by: Option<String>,
}

/// A paid reward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reward {
    /// Also the id of its transfer.
    pub id: TransferId,
    pub user: UserId,
    pub reason: String,
    pub reference: String,
    pub amount: Amount,
    pub order_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// This request found the reward already paid and paid nothing.
    pub replayed: bool,
}

// --- invariants --------------------------------------------------------------------------

/// What [`Ledger::audit`](crate::Ledger::audit) found: the invariants and the sealed chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub invariants: InvariantReport,
    pub chain: crate::seal::ChainVerification,
}

impl Audit {
    /// Every invariant holds and every sealed block matches its transfers.
    pub fn is_ok(&self) -> bool {
        self.invariants.is_ok() && self.chain.is_valid()
    }

    /// What a periodic audit reports: a summary when everything holds, else the first broken
    /// block or the first violation (with how many there are).
    pub fn verdict(&self) -> Result<String, String> {
        if let Some(invalid) = &self.chain.first_invalid {
            return Err(format!(
                "the sealed chain is broken at block {}: {:?}",
                invalid.height, invalid.problem
            ));
        }
        if let Some(first) = self.invariants.violations.first() {
            return Err(format!(
                "{} invariant violation(s), the first: {first:?}",
                self.invariants.violations.len()
            ));
        }
        Ok(format!(
            "{} transfers balance, {} blocks intact",
            self.invariants.transfers, self.chain.blocks_checked
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvariantReport {
    pub assets: i64,
    pub wallets: i64,
    pub transfers: i64,
    pub violations: Vec<Violation>,
}

impl InvariantReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Violation {
    /// The posted balances of an asset do not sum to zero, or its holds do not balance.
    AssetNotBalanced {
        asset: String,
        posted_sum: String,
        pending_debits_sum: String,
        pending_credits_sum: String,
    },
    /// A wallet's stored balance differs from the sum of its posted transfers.
    BalanceMismatch {
        wallet: WalletId,
        stored: String,
        from_transfers: String,
    },
    /// A wallet's stored holds differ from its open pending transfers.
    HoldMismatch {
        wallet: WalletId,
        stored_debits: i64,
        open_debits: String,
        stored_credits: i64,
        open_credits: String,
    },
    /// A wallet is below its minimum balance.
    BelowMinimum {
        wallet: WalletId,
        available: i64,
        min_balance: i64,
    },
    /// A user wallet without a bound, or bounded below zero.
    UserWalletUnbounded {
        wallet: WalletId,
        min_balance: Option<i64>,
    },
    /// A balance row of a rewards pool or fees wallet without a bound, or bounded below zero:
    /// only the issuer may go below zero.
    SystemWalletUnbounded {
        wallet: WalletId,
        shard: i16,
        min_balance: Option<i64>,
    },
    /// What circulates of an asset (every wallet but its issuer) is not minus the issuer's
    /// balance, or the asset has no issuer, or more than one.
    SupplyNotIssued {
        asset: String,
        supply: String,
        issuer_balance: Option<String>,
    },
}

// --- the change feed ---------------------------------------------------------------------
/// A page of the feed, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedPage {
    pub transfers: Vec<Transfer>,
    /// The position to ask for next: the last transfer's, or `after` when there were none.
    pub next: Position,
}

mod duration_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::SystemWallet;

    #[test]
    fn a_system_wallet_is_named_as_its_json_names_it() {
        for kind in [
            SystemWallet::Issuer,
            SystemWallet::RewardsPool,
            SystemWallet::Fees,
        ] {
            let name = serde_json::to_value(kind).unwrap();
            assert_eq!(
                name.as_str().unwrap().parse::<SystemWallet>().unwrap(),
                kind
            );
        }
        assert!("rewards-pool".parse::<SystemWallet>().is_err());
    }
}
