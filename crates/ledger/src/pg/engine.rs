//! Submitting transfers: requests become one call of `blockchain.submit_transfers` (a batch)
//! or `blockchain.submit_transfer` (one immediate transfer), and its status rows become
//! results. The semantics live in those functions (migration V2 of the `blockchain` set);
//! this module only encodes, decodes and names the failures.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::amount::Amount;
use crate::error::LedgerError;
use crate::ids::{TransferId, WalletId};
use crate::model::{
    Applied, BatchMode, Instruction, Position, Transfer, TransferKind, TransferRequest,
};

/// Most items one batch may hold (the engine's own limit).
pub const MAX_BATCH: usize = 10_000;

/// One row of `blockchain.transfer_result`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ResultRow {
    pub status: String,
    pub fact_wallet: Option<Uuid>,
    pub fact_needed: Option<i64>,
    pub fact_available: Option<i64>,
    pub id: Option<Uuid>,
    pub tx_id: Option<i64>,
    pub seq: Option<i64>,
    pub kind: Option<String>,
    pub debit_wallet_id: Option<Uuid>,
    pub credit_wallet_id: Option<Uuid>,
    pub amount: Option<i64>,
    pub pending_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub submitted_by: Option<String>,
}

/// Submits `requests` on `connection` (inside the caller's transaction, if it has one).
///
/// The outer error is a failure of the whole call (the database, or a batch size out of
/// range); the inner results say, item by item, what was applied, replayed or refused.
pub(crate) async fn submit(
    connection: &mut PgConnection,
    requests: &[TransferRequest],
    mode: BatchMode,
) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return Err(LedgerError::BatchSize {
            size: requests.len(),
            max: MAX_BATCH,
        });
    }
    // Requests the database would store unchecked are refused here, as the engine would
    // refuse an invalid item: alone in an independent batch, the whole of a linked one.
    let invalid: Vec<Option<LedgerError>> = requests
        .iter()
        .map(|request| request.validate().err())
        .collect();
    if invalid.iter().any(Option::is_some) {
        if mode == BatchMode::Linked {
            return Ok(invalid
                .into_iter()
                .map(|error| Err(error.unwrap_or(LedgerError::LinkedEventFailed)))
                .collect());
        }
        let valid: Vec<TransferRequest> = requests
            .iter()
            .zip(&invalid)
            .filter(|(_, error)| error.is_none())
            .map(|(request, _)| request.clone())
            .collect();
        let mut applied = if valid.is_empty() {
            Vec::new().into_iter()
        } else {
            submit_valid(connection, &valid, mode, None)
                .await?
                .into_iter()
        };
        return Ok(invalid
            .into_iter()
            .map(|error| match error {
                Some(error) => Err(error),
                None => applied
                    .next()
                    .unwrap_or(Err(LedgerError::LinkedEventFailed)),
            })
            .collect());
    }
    let results = submit_valid(connection, requests, mode, None).await?;
    match (requests, results.as_slice()) {
        ([single], [Err(LedgerError::InsufficientFunds { wallet, .. })]) => {
            retry_on_fuller_shard(connection, single, *wallet, mode, results).await
        }
        _ => Ok(results),
    }
}

/// Submits valid `requests`, linked, with the movements of sharded wallets on `shard`.
pub(crate) async fn submit_on_shard(
    connection: &mut PgConnection,
    requests: &[TransferRequest],
    shard: Option<i32>,
) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
    for request in requests {
        request.validate()?;
    }
    submit_valid(connection, requests, BatchMode::Linked, shard).await
}

/// A sharded wallet is bounded shard by shard, so a transfer can be refused by the shard it
/// landed on while the wallet as a whole holds enough. Before that answer stands, what the
/// transfer needs is moved onto one of the wallet's shards, the rest spread evenly again (in a
/// savepoint, or a transaction of its own; see `blockchain.gather_shards`), and the transfer
/// is tried there. Refused stands only when the wallet as a whole is short; when it is not,
/// but other transfers hold the shards it would need, the answer is the retryable
/// [`LedgerError::ShardsBusy`].
async fn retry_on_fuller_shard(
    connection: &mut PgConnection,
    request: &TransferRequest,
    wallet: WalletId,
    mode: BatchMode,
    refused: Vec<Result<Applied, LedgerError>>,
) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
    let Instruction::Transfer { amount, .. } = &request.instruction else {
        return Ok(refused);
    };
    let shards: Option<i16> =
        sqlx::query_scalar("SELECT shard_count FROM blockchain.wallets WHERE id = $1")
            .bind(wallet.as_uuid())
            .fetch_optional(&mut *connection)
            .await?;
    if shards.unwrap_or(1) <= 1 {
        return Ok(refused);
    }
    let mut attempt = connection.begin().await?;
    let gathered: Option<i16> = sqlx::query_scalar("SELECT blockchain.gather_shards($1, $2)")
        .bind(wallet.as_uuid())
        .bind(amount.units())
        .fetch_one(&mut *attempt)
        .await?;
    if let Some(shard) = gathered {
        let results = submit_valid(
            &mut attempt,
            std::slice::from_ref(request),
            mode,
            Some(i32::from(shard)),
        )
        .await?;
        attempt.commit().await?;
        return Ok(results);
    }
    attempt.rollback().await?;
    let free: Option<i64> = sqlx::query_scalar(
        "SELECT least(sum(posted - pending_debits - min_balance), 9223372036854775807)::bigint
           FROM blockchain.balances WHERE wallet_id = $1",
    )
    .bind(wallet.as_uuid())
    .fetch_one(&mut *connection)
    .await?;
    if free.unwrap_or(0) >= amount.units() {
        return Err(LedgerError::ShardsBusy(wallet));
    }
    Ok(refused
        .into_iter()
        .map(|result| match result {
            Err(LedgerError::InsufficientFunds { wallet, needed, .. }) => {
                Err(LedgerError::InsufficientFunds {
                    wallet,
                    needed,
                    available: free.unwrap_or(0).max(0),
                })
            }
            other => other,
        })
        .collect())
}

/// `shard`: the shard a sharded wallet's movement lands on; `None`: a random one.
async fn submit_valid(
    connection: &mut PgConnection,
    requests: &[TransferRequest],
    mode: BatchMode,
    shard: Option<i32>,
) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
    let rows = match requests {
        [
            single @ TransferRequest {
                instruction: Instruction::Transfer { .. },
                ..
            },
        ] => {
            vec![submit_one(connection, single, shard).await?]
        }
        _ => submit_batch(connection, requests, mode, shard).await?,
    };
    if rows.len() != requests.len() {
        return Err(LedgerError::UnexpectedResult(format!(
            "{} results for {} transfers",
            rows.len(),
            requests.len()
        )));
    }
    Ok(rows
        .into_iter()
        .zip(requests)
        .map(|(row, request)| outcome(row, request))
        .collect())
}

/// One immediate transfer through the engine's two-statement path.
async fn submit_one(
    connection: &mut PgConnection,
    request: &TransferRequest,
    shard: Option<i32>,
) -> Result<ResultRow, LedgerError> {
    let Instruction::Transfer {
        debit,
        credit,
        amount,
    } = &request.instruction
    else {
        return Err(LedgerError::UnexpectedResult(
            "submit_one takes immediate transfers only".into(),
        ));
    };
    let details = &request.details;
    Ok(sqlx::query_as::<_, ResultRow>(
        "SELECT * FROM blockchain.submit_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(request.id.as_uuid())
    .bind(debit.as_uuid())
    .bind(credit.as_uuid())
    .bind(amount.units())
    .bind(details.reason.as_deref())
    .bind(details.reference.as_deref())
    .bind(details.metadata.as_ref().map(Json))
    .bind(details.submitted_by.as_deref())
    .bind(shard)
    .fetch_one(connection)
    .await?)
}

/// Column-wise arrays of a batch, as `blockchain.submit_transfers` takes them.
#[derive(Default)]
struct Columns<'r> {
    ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    debits: Vec<Option<Uuid>>,
    credits: Vec<Option<Uuid>>,
    amounts: Vec<Option<i64>>,
    pending_ids: Vec<Option<Uuid>>,
    timeouts_ms: Vec<Option<i64>>,
    reasons: Vec<Option<&'r str>>,
    references: Vec<Option<&'r str>>,
    metadata: Vec<Option<Json<&'r serde_json::Map<String, serde_json::Value>>>>,
    submitted_by: Vec<Option<&'r str>>,
}

impl<'r> Columns<'r> {
    fn of(requests: &'r [TransferRequest]) -> Self {
        let mut columns = Self::default();
        for request in requests {
            let (kind, debit, credit, amount, pending, timeout) = match &request.instruction {
                Instruction::Transfer {
                    debit,
                    credit,
                    amount,
                } => (
                    "transfer",
                    Some(debit.as_uuid()),
                    Some(credit.as_uuid()),
                    Some(amount.units()),
                    None,
                    None,
                ),
                Instruction::Hold {
                    debit,
                    credit,
                    amount,
                    timeout,
                } => (
                    "pending",
                    Some(debit.as_uuid()),
                    Some(credit.as_uuid()),
                    Some(amount.units()),
                    None,
                    Some(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
                ),
                Instruction::Post { pending, amount } => (
                    "post",
                    None,
                    None,
                    amount.map(Amount::units),
                    Some(pending.as_uuid()),
                    None,
                ),
                Instruction::Void { pending } => {
                    ("void", None, None, None, Some(pending.as_uuid()), None)
                }
            };
            columns.push(request, kind, debit, credit, amount, pending, timeout);
        }
        columns
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        request: &'r TransferRequest,
        kind: &'static str,
        debit: Option<Uuid>,
        credit: Option<Uuid>,
        amount: Option<i64>,
        pending: Option<Uuid>,
        timeout_ms: Option<i64>,
    ) {
        self.ids.push(request.id.as_uuid());
        self.kinds.push(kind);
        self.debits.push(debit);
        self.credits.push(credit);
        self.amounts.push(amount);
        self.pending_ids.push(pending);
        self.timeouts_ms.push(timeout_ms);
        self.reasons.push(request.details.reason.as_deref());
        self.references.push(request.details.reference.as_deref());
        self.metadata
            .push(request.details.metadata.as_ref().map(Json));
        self.submitted_by
            .push(request.details.submitted_by.as_deref());
    }
}

async fn submit_batch(
    connection: &mut PgConnection,
    requests: &[TransferRequest],
    mode: BatchMode,
    shard: Option<i32>,
) -> Result<Vec<ResultRow>, LedgerError> {
    let columns = Columns::of(requests);
    submit_columns(connection, &columns, mode, shard).await
}

async fn submit_columns(
    connection: &mut PgConnection,
    columns: &Columns<'_>,
    mode: BatchMode,
    shard: Option<i32>,
) -> Result<Vec<ResultRow>, LedgerError> {
    Ok(sqlx::query_as::<_, ResultRow>(
        "SELECT * FROM blockchain.submit_transfers($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&columns.ids)
    .bind(&columns.kinds)
    .bind(&columns.debits)
    .bind(&columns.credits)
    .bind(&columns.amounts)
    .bind(&columns.pending_ids)
    .bind(&columns.timeouts_ms)
    .bind(&columns.reasons)
    .bind(&columns.references)
    .bind(&columns.metadata)
    .bind(mode == BatchMode::Linked)
    .bind(&columns.submitted_by)
    .bind(shard)
    .fetch_all(connection)
    .await?)
}

/// Expires the given lapsed holds (ids derived from each hold, so concurrent sweepers agree).
/// Returns how many this call expired.
pub(crate) async fn expire_holds(
    connection: &mut PgConnection,
    pending: &[TransferId],
) -> Result<usize, LedgerError> {
    if pending.is_empty() {
        return Ok(0);
    }
    let requests: Vec<TransferRequest> = pending
        .iter()
        .map(|hold| {
            let id = TransferId(Uuid::new_v5(
                &crate::ids::namespaces::EXPIRY,
                hold.as_uuid().as_bytes(),
            ));
            TransferRequest::void(*hold).with_id(id)
        })
        .collect();
    let mut columns = Columns::of(&requests);
    columns.kinds.fill("expire");
    let rows = submit_columns(connection, &columns, BatchMode::Independent, None).await?;
    Ok(rows.iter().filter(|row| row.status == "ok").count())
}

/// Turns one status row into the item's result, naming failures with their facts.
fn outcome(row: ResultRow, request: &TransferRequest) -> Result<Applied, LedgerError> {
    let wallet = || WalletId(row.fact_wallet.unwrap_or_default());
    let pending = || match &request.instruction {
        Instruction::Post { pending, .. } | Instruction::Void { pending } => *pending,
        Instruction::Transfer { .. } | Instruction::Hold { .. } => request.id,
    };
    let (debit, credit) = match &request.instruction {
        Instruction::Transfer { debit, credit, .. } | Instruction::Hold { debit, credit, .. } => {
            (*debit, *credit)
        }
        Instruction::Post { .. } | Instruction::Void { .. } => {
            (WalletId(Uuid::nil()), WalletId(Uuid::nil()))
        }
    };
    let error = match row.status.as_str() {
        "ok" => {
            return Ok(Applied {
                transfer: applied_transfer(row, request)?,
                replayed: false,
            });
        }
        "replayed" => {
            return Ok(Applied {
                transfer: transfer_from(row)?,
                replayed: true,
            });
        }
        "id_conflict" => LedgerError::IdConflict { id: request.id },
        "linked_event_failed" => LedgerError::LinkedEventFailed,
        "invalid_amount" => LedgerError::InvalidAmount { units: 0 },
        "invalid_timeout" => LedgerError::InvalidField {
            field: "timeout",
            reason: "must be at least 1 millisecond".into(),
        },
        "invalid_request" => LedgerError::InvalidField {
            field: "instruction",
            reason: "incomplete".into(),
        },
        "same_wallet" => LedgerError::SameWallet,
        "wallet_not_found" => LedgerError::WalletNotFound(wallet()),
        "wallet_closed" => LedgerError::WalletClosed(wallet()),
        "asset_mismatch" => LedgerError::AssetMismatch { debit, credit },
        "insufficient_funds" => LedgerError::InsufficientFunds {
            wallet: wallet(),
            needed: row.fact_needed.unwrap_or_default(),
            available: row.fact_available.unwrap_or_default(),
        },
        "overflow" => LedgerError::Overflow { wallet: wallet() },
        "pending_not_found" => LedgerError::PendingNotFound(pending()),
        "pending_already_resolved" => LedgerError::PendingAlreadyResolved(pending()),
        "pending_expired" => LedgerError::PendingExpired(pending()),
        "pending_not_expired" => LedgerError::PendingNotExpired(pending()),
        "amount_exceeds_pending" => LedgerError::AmountExceedsPending {
            pending: pending(),
            requested: row.fact_needed.unwrap_or_default(),
            held: row.fact_available.unwrap_or_default(),
        },
        other => LedgerError::UnexpectedResult(format!("unknown transfer status {other:?}")),
    };
    Err(error)
}

/// An applied item: the engine returns what it decided (position, wallets, amount, expiry,
/// time); the rest is what the request said, stored as it was sent.
fn applied_transfer(
    mut row: ResultRow,
    request: &TransferRequest,
) -> Result<Transfer, LedgerError> {
    let details = &request.details;
    row.id = Some(request.id.as_uuid());
    row.pending_id = match &request.instruction {
        Instruction::Post { pending, .. } | Instruction::Void { pending } => {
            Some(pending.as_uuid())
        }
        Instruction::Transfer { .. } | Instruction::Hold { .. } => None,
    };
    row.reason.clone_from(&details.reason);
    row.reference.clone_from(&details.reference);
    row.metadata = details.metadata.clone().map(serde_json::Value::Object);
    row.submitted_by.clone_from(&details.submitted_by);
    transfer_from(row)
}

/// A transfer as the database stored it.
fn transfer_from(row: ResultRow) -> Result<Transfer, LedgerError> {
    let missing =
        |column: &str| LedgerError::UnexpectedResult(format!("applied transfer without {column}"));
    let kind = row
        .kind
        .as_deref()
        .and_then(TransferKind::parse)
        .ok_or_else(|| missing("kind"))?;
    Ok(Transfer {
        id: TransferId(row.id.ok_or_else(|| missing("id"))?),
        position: Position {
            tx_id: row.tx_id.ok_or_else(|| missing("tx_id"))?,
            seq: row.seq.ok_or_else(|| missing("seq"))?,
        },
        kind,
        debit_wallet: WalletId(
            row.debit_wallet_id
                .ok_or_else(|| missing("debit_wallet_id"))?,
        ),
        credit_wallet: WalletId(
            row.credit_wallet_id
                .ok_or_else(|| missing("credit_wallet_id"))?,
        ),
        amount: Amount::new(row.amount.ok_or_else(|| missing("amount"))?)?,
        pending_id: row.pending_id.map(TransferId),
        expires_at: row.expires_at,
        reason: row.reason,
        reference: row.reference,
        metadata: row.metadata,
        created_at: row.created_at.ok_or_else(|| missing("created_at"))?,
        submitted_by: row.submitted_by,
    })
}
