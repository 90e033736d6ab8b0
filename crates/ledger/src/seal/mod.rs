//! Sealed blocks: tamper evidence for the transfer history.
//!
//! `seal_next` ([`Ledger::seal_next_block`](crate::Ledger::seal_next_block)) takes the final
//! transfers after the last block (positions below the oldest running transaction, in
//! position order, as the change feed does), hashes each into a Merkle leaf, and appends a
//! block that commits to their root and to the previous block's hash. It only reads transfers
//! and inserts a block: no transfer ever waits for it, and several sealers agree through an
//! advisory lock (one seals, the others skip).
//!
//! `verify` ([`Ledger::verify_chain`](crate::Ledger::verify_chain)) recomputes the chain from
//! the rows as they are now and names the first block that does not match: a transfer of a
//! sealed block edited, deleted or inserted, or a block itself edited.

pub(crate) mod encoding;
pub mod merkle;
pub mod proof;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::LedgerError;
use crate::model::Position;
use crate::pg::rows::{TRANSFER_COLUMNS, TransferRow};
use encoding::BlockHeader;
use merkle::Hash;

/// The hash a genesis block points back to.
pub const GENESIS_PREVIOUS_HASH: Hash = [0; 32];

/// Advisory lock key of the sealer: one sealer at a time per database.
const SEALER_LOCK: i64 = 0x666f_6469_7365_616c; // "fodiseal"

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Block {
    pub height: i64,
    /// Position of the last transfer the block covers; it covers everything after the
    /// previous block's, up to this.
    pub last_position: Position,
    pub transaction_count: i32,
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub merkle_root: Hash,
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub previous_hash: Hash,
    #[serde(with = "hex::serde")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub hash: Hash,
    pub sealed_at: DateTime<Utc>,
}

/// What [`Ledger::verify_chain`](crate::Ledger::verify_chain) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ChainCheck))]
pub struct ChainVerification {
    pub blocks_checked: i64,
    pub transfers_checked: i64,
    /// The first block that does not match, and how; `None` when the chain is intact.
    pub first_invalid: Option<InvalidBlock>,
}

impl ChainVerification {
    pub fn is_valid(&self) -> bool {
        self.first_invalid.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvalidBlock {
    pub height: i64,
    pub problem: BlockProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BlockProblem {
    /// Heights are not consecutive from zero.
    MissingHeight,
    /// `previous_hash` is not the hash of the block before.
    BrokenLink,
    /// The block covers another number of transfers than it says.
    CountMismatch,
    /// The transfers' Merkle root differs: one was edited, deleted or inserted.
    MerkleRootMismatch,
    /// The block's own fields do not hash to its stored hash.
    HashMismatch,
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    height: i64,
    last_tx_id: i64,
    last_seq: i64,
    transaction_count: i32,
    merkle_root: Vec<u8>,
    previous_hash: Vec<u8>,
    hash: Vec<u8>,
    sealed_at: DateTime<Utc>,
}

impl TryFrom<BlockRow> for Block {
    type Error = LedgerError;

    fn try_from(row: BlockRow) -> Result<Self, Self::Error> {
        let hash = |bytes: Vec<u8>| {
            Hash::try_from(bytes.as_slice()).map_err(|_| {
                LedgerError::UnexpectedResult(format!(
                    "block {} holds a hash that is not 32 bytes",
                    row.height
                ))
            })
        };
        Ok(Block {
            height: row.height,
            last_position: Position {
                tx_id: row.last_tx_id,
                seq: row.last_seq,
            },
            transaction_count: row.transaction_count,
            merkle_root: hash(row.merkle_root.clone())?,
            previous_hash: hash(row.previous_hash.clone())?,
            hash: hash(row.hash.clone())?,
            sealed_at: row.sealed_at,
        })
    }
}

const BLOCK_COLUMNS: &str =
    "height, last_tx_id, last_seq, transaction_count, merkle_root, previous_hash, hash, sealed_at";

/// Seals the next block of at most `max_transfers` final transfers. `None`: nothing to seal,
/// or another sealer holds the lock.
pub(crate) async fn seal_next(
    connection: &mut PgConnection,
    max_transfers: u32,
) -> Result<Option<Block>, LedgerError> {
    let mut transaction = connection.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SEALER_LOCK)
        .fetch_one(&mut *transaction)
        .await?;
    if !locked {
        return Ok(None);
    }
    let last: Option<BlockRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blockchain.blocks ORDER BY height DESC LIMIT 1"
    )))
    .fetch_optional(&mut *transaction)
    .await?;
    let last = last.map(Block::try_from).transpose()?;
    let after = last
        .as_ref()
        .map_or(Position::START, |block| block.last_position);

    let rows =
        crate::pg::feed::final_transfers_after(&mut transaction, after, max_transfers).await?;
    let Some(last_row) = rows.last() else {
        return Ok(None);
    };

    let leaves: Vec<Hash> = rows
        .iter()
        .map(|row| merkle::leaf(&encoding::transfer(row)))
        .collect();
    let merkle_root = merkle::root(&leaves).unwrap_or_default();
    let previous_hash = last
        .as_ref()
        .map_or(GENESIS_PREVIOUS_HASH, |block| block.hash);
    let height = last.as_ref().map_or(0, |block| block.height + 1);
    let transaction_count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    // Stored with microsecond precision; hashed with exactly what is stored.
    let sealed_at = Utc::now().trunc_subsecs(6);
    let header = BlockHeader {
        height,
        previous_hash: &previous_hash,
        merkle_root: &merkle_root,
        transaction_count,
        last_tx_id: last_row.tx_id,
        last_seq: last_row.seq,
        sealed_at,
    };
    let hash = sha256(&encoding::block(&header));
    sqlx::query(
        "INSERT INTO blockchain.blocks (height, last_tx_id, last_seq, transaction_count, merkle_root, previous_hash, hash, sealed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(height)
    .bind(last_row.tx_id)
    .bind(last_row.seq)
    .bind(transaction_count)
    .bind(merkle_root.as_slice())
    .bind(previous_hash.as_slice())
    .bind(hash.as_slice())
    .bind(sealed_at)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(Some(Block {
        height,
        last_position: Position {
            tx_id: header.last_tx_id,
            seq: header.last_seq,
        },
        transaction_count,
        merkle_root,
        previous_hash,
        hash,
        sealed_at,
    }))
}

/// See [`crate::Ledger::seal_status`]: two index probes, whatever the backlog.
pub(crate) async fn status(
    connection: &mut PgConnection,
) -> Result<crate::metrics::SealStatus, LedgerError> {
    let (height, oldest_unsealed_at): (Option<i64>, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH newest AS (
             SELECT height, last_tx_id, last_seq FROM blockchain.blocks
              ORDER BY height DESC LIMIT 1)
         SELECT (SELECT height FROM newest),
                (SELECT t.created_at FROM blockchain.fodi_transactions t
                  WHERE t.tx_id >= coalesce((SELECT last_tx_id FROM newest), 0)
                    AND (t.tx_id, t.seq) > (coalesce((SELECT last_tx_id FROM newest), 0),
                                            coalesce((SELECT last_seq FROM newest), 0))
                  ORDER BY t.tx_id, t.seq LIMIT 1)",
    )
    .fetch_one(connection)
    .await?;
    Ok(crate::metrics::SealStatus {
        height,
        oldest_unsealed_at,
    })
}

/// Blocks from `from_height` on, at most `limit`, oldest first.
pub(crate) async fn blocks(
    connection: &mut PgConnection,
    from_height: i64,
    limit: u32,
) -> Result<Vec<Block>, LedgerError> {
    if from_height < 0 {
        return Err(LedgerError::InvalidField {
            field: "from",
            reason: "must not be negative".into(),
        });
    }
    let limit = crate::pg::history::page_size(limit)?;
    let rows: Vec<BlockRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blockchain.blocks WHERE height >= $1 ORDER BY height LIMIT $2"
    )))
    .bind(from_height)
    .bind(limit)
    .fetch_all(connection)
    .await?;
    rows.into_iter().map(Block::try_from).collect()
}

/// Recomputes the blocks from `from_height` to `to_height` (the last when `None`) from the
/// transfers as they are now; stops at the first mismatch. A range starting above zero takes
/// the block before it as it is stored (verified by an earlier run), so a periodic check can
/// go on from where the last one stopped. A range ending before it starts is empty.
///
/// Runs on `transaction`, just begun by the caller (the isolation level is set here, which a
/// savepoint could no longer do).
pub(crate) async fn verify(
    transaction: &mut PgConnection,
    from_height: i64,
    to_height: Option<i64>,
) -> Result<ChainVerification, LedgerError> {
    if from_height < 0 || to_height.is_some_and(|to| to < 0) {
        return Err(LedgerError::InvalidField {
            field: if from_height < 0 { "from" } else { "to" },
            reason: "heights are 0 or more".into(),
        });
    }
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let mut report = ChainVerification {
        blocks_checked: 0,
        transfers_checked: 0,
        first_invalid: None,
    };
    let mut previous: Option<Block> = match from_height {
        0 => None,
        from => blocks(&mut *transaction, from - 1, 1)
            .await?
            .into_iter()
            .find(|block| block.height == from - 1),
    };
    if from_height > 0 && previous.is_none() {
        // The block the range follows is not there: the chain is shorter than the caller knew
        // it (blocks deleted), or the range starts past its end.
        report.first_invalid = Some(InvalidBlock {
            height: from_height - 1,
            problem: BlockProblem::MissingHeight,
        });
        return Ok(report);
    }
    let mut next_height = from_height;
    'pages: loop {
        let page = blocks(&mut *transaction, next_height, 200).await?;
        if page.is_empty() {
            break;
        }
        for block in page {
            if to_height.is_some_and(|to| block.height > to) {
                break 'pages;
            }
            let problem =
                check_block(&mut *transaction, &block, previous.as_ref(), &mut report).await?;
            report.blocks_checked += 1;
            if let Some(problem) = problem {
                report.first_invalid = Some(InvalidBlock {
                    height: block.height,
                    problem,
                });
                break 'pages;
            }
            next_height = block.height + 1;
            previous = Some(block);
        }
    }
    Ok(report)
}

async fn check_block(
    connection: &mut PgConnection,
    block: &Block,
    previous: Option<&Block>,
    report: &mut ChainVerification,
) -> Result<Option<BlockProblem>, LedgerError> {
    let expected_height = previous.map_or(0, |previous| previous.height + 1);
    if block.height != expected_height {
        return Ok(Some(BlockProblem::MissingHeight));
    }
    let previous_hash = previous.map_or(GENESIS_PREVIOUS_HASH, |previous| previous.hash);
    if block.previous_hash != previous_hash {
        return Ok(Some(BlockProblem::BrokenLink));
    }
    let after = previous.map_or(Position::START, |previous| previous.last_position);
    let rows = block_transfers(connection, after, block).await?;
    report.transfers_checked += rows.len() as i64;
    if rows.len() != usize::try_from(block.transaction_count).unwrap_or(usize::MAX) {
        return Ok(Some(BlockProblem::CountMismatch));
    }
    let leaves: Vec<Hash> = rows
        .iter()
        .map(|row| merkle::leaf(&encoding::transfer(row)))
        .collect();
    if merkle::root(&leaves) != Some(block.merkle_root) {
        return Ok(Some(BlockProblem::MerkleRootMismatch));
    }
    if proof::block_hash(block) != block.hash {
        return Ok(Some(BlockProblem::HashMismatch));
    }
    Ok(None)
}

/// The transfers `block` covers (those after `after`, the previous block's last position), in
/// the order its leaves were hashed.
async fn block_transfers(
    connection: &mut PgConnection,
    after: Position,
    block: &Block,
) -> Result<Vec<TransferRow>, LedgerError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TRANSFER_COLUMNS} FROM blockchain.fodi_transactions t
          WHERE t.tx_id >= $1 AND t.tx_id <= $3
            AND (t.tx_id, t.seq) > ($1, $2) AND (t.tx_id, t.seq) <= ($3, $4)
          ORDER BY t.tx_id, t.seq"
    )))
    .bind(after.tx_id)
    .bind(after.seq)
    .bind(block.last_position.tx_id)
    .bind(block.last_position.seq)
    .fetch_all(connection)
    .await?)
}

/// The inclusion proof of transfer `id` against the block at `pinned_height` (the transfer's
/// own block when `None`; never an earlier one, which commits to nothing after it).
/// `Ok(None)`: no such transfer. `NotSealed`: not in a block yet, or the pinned block does not
/// exist yet.
///
/// Runs on `transaction`, just begun by the caller, as [`verify`].
pub(crate) async fn inclusion_proof(
    transaction: &mut PgConnection,
    id: crate::ids::TransferId,
    pinned_height: Option<i64>,
) -> Result<Option<proof::InclusionProof>, LedgerError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let position: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id, seq FROM blockchain.fodi_transactions WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&mut *transaction)
            .await?;
    let Some((tx_id, seq)) = position else {
        return Ok(None);
    };
    let holding: Option<BlockRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blockchain.blocks
          WHERE (last_tx_id, last_seq) >= ($1, $2) ORDER BY height LIMIT 1"
    )))
    .bind(tx_id)
    .bind(seq)
    .fetch_optional(&mut *transaction)
    .await?;
    let block = holding
        .map(Block::try_from)
        .transpose()?
        .ok_or(LedgerError::NotSealed(id))?;
    let (low, high) = (block.height, pinned_height.unwrap_or(block.height));
    if high < low || high - low >= proof::MAX_PROOF_BLOCKS {
        return Err(LedgerError::InvalidField {
            field: "pinned_height",
            reason: format!(
                "must be the transfer's block ({}) or one of the {} after it: an earlier block \
                 commits to nothing after it",
                block.height,
                proof::MAX_PROOF_BLOCKS - 1
            ),
        });
    }
    let rows: Vec<BlockRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {BLOCK_COLUMNS} FROM blockchain.blocks WHERE height BETWEEN $1 AND $2 ORDER BY height"
    )))
    .bind(low - 1)
    .bind(high)
    .fetch_all(&mut *transaction)
    .await?;
    let mut run: Vec<Block> = rows
        .into_iter()
        .map(Block::try_from)
        .collect::<Result<_, _>>()?;
    if run.last().map(|last| last.height) != Some(high) {
        return Err(LedgerError::NotSealed(id));
    }
    // The block before the transfer's, read for where its range starts, is not part of the run.
    let after = run
        .iter()
        .find(|previous| previous.height == block.height - 1)
        .map_or(Position::START, |previous| previous.last_position);
    run.retain(|candidate| candidate.height >= low);
    let transfers = block_transfers(&mut *transaction, after, &block).await?;
    let encodings: Vec<Vec<u8>> = transfers.iter().map(encoding::transfer).collect();
    let leaves: Vec<Hash> = encodings.iter().map(|bytes| merkle::leaf(bytes)).collect();
    let index = transfers
        .iter()
        .position(|row| row.id == id.as_uuid())
        .ok_or_else(|| {
            LedgerError::UnexpectedResult(format!("transfer {id} is not in its block"))
        })?;
    Ok(Some(proof::InclusionProof {
        transfer_id: id,
        leaf_encoding: encodings[index].clone(),
        path: proof::path(&leaves, index),
        blocks: run,
        block_height: block.height,
    }))
}

pub(crate) fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// A hash from its 64 hex digits.
pub fn parse_hash(text: &str) -> Result<Hash, hex::FromHexError> {
    hex::FromHex::from_hex(text.trim())
}
