//! Non-fungible tokens: mint, transfer, burn, with every movement recorded.
//!
//! Ownership is one column of one row, changed only by an update conditioned on the current
//! owner: two concurrent transfers of one NFT serialise on its row and the second finds the
//! owner changed. Ids are chosen by the client, so a retried request is recognised.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ids::{NftId, NftTransferId, UserId};
use crate::model::{MintNft, MoveNft, Nft, NftMovement};

#[derive(sqlx::FromRow)]
struct NftRow {
    id: Uuid,
    owner_id: Option<Uuid>,
    collection: String,
    token_uri: Option<String>,
    metadata: serde_json::Value,
    minted_at: DateTime<Utc>,
    burned_at: Option<DateTime<Utc>>,
}

impl From<NftRow> for Nft {
    fn from(row: NftRow) -> Self {
        Self {
            id: NftId(row.id),
            owner: row.owner_id.map(UserId),
            collection: row.collection,
            token_uri: row.token_uri,
            metadata: row.metadata,
            minted_at: row.minted_at,
            burned_at: row.burned_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct MovementRow {
    id: Uuid,
    nft_id: Uuid,
    from_user_id: Option<Uuid>,
    to_user_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<MovementRow> for NftMovement {
    fn from(row: MovementRow) -> Self {
        Self {
            id: NftTransferId(row.id),
            nft: NftId(row.nft_id),
            from: row.from_user_id.map(UserId),
            to: row.to_user_id.map(UserId),
            created_at: row.created_at,
        }
    }
}

const NFT_COLUMNS: &str = "id, owner_id, collection, token_uri, metadata, minted_at, burned_at";

/// Mints `request` (its mint is recorded as a movement with the NFT's id). Minting the same
/// NFT again returns it; the same id with other fields is a conflict.
pub(crate) async fn mint(
    connection: &mut PgConnection,
    request: &MintNft,
) -> Result<Nft, LedgerError> {
    if request.collection.is_empty() || request.collection.chars().count() > 100 {
        return Err(LedgerError::InvalidField {
            field: "collection",
            reason: "must be 1 to 100 characters".into(),
        });
    }
    if request
        .token_uri
        .as_ref()
        .is_some_and(|uri| uri.is_empty() || uri.chars().count() > 2048)
    {
        // Characters, as the schema's check counts them (`length()`).
        return Err(LedgerError::InvalidField {
            field: "token_uri",
            reason: "must be 1 to 2048 characters".into(),
        });
    }
    let inserted: Option<NftRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH minted AS (
             INSERT INTO blockchain.nft_metadata (id, owner_id, collection, token_uri, metadata)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING
             RETURNING {NFT_COLUMNS}
         ), recorded AS (
             INSERT INTO blockchain.nft_transfers (id, nft_id, to_user_id) SELECT id, id, owner_id FROM minted
         )
         SELECT {NFT_COLUMNS} FROM minted"
    )))
    .bind(request.id.as_uuid())
    .bind(request.owner.as_uuid())
    .bind(&request.collection)
    .bind(request.token_uri.as_deref())
    .bind(Json(&request.metadata))
    .fetch_optional(&mut *connection)
    .await
    .map_err(|error| match LedgerError::from(error) {
        LedgerError::Db(db) if db.constraint() == Some("nft_metadata_owner_id_fkey") => {
            LedgerError::UserNotFound(request.owner)
        }
        other => other,
    })?;
    if let Some(row) = inserted {
        return Ok(row.into());
    }
    // The id exists: the same mint again, or another NFT.
    let existing = nft(connection, request.id).await?;
    let first_owner: Option<Uuid> = sqlx::query_scalar(
        "SELECT to_user_id FROM blockchain.nft_transfers WHERE id = $1 AND nft_id = $1",
    )
    .bind(request.id.as_uuid())
    .fetch_optional(&mut *connection)
    .await?
    .flatten();
    let same = first_owner == Some(request.owner.as_uuid())
        && existing.collection == request.collection
        && existing.token_uri == request.token_uri
        && existing.metadata == serde_json::Value::Object(request.metadata.clone());
    if same {
        Ok(existing)
    } else {
        Err(LedgerError::NftConflict(request.id))
    }
}

/// Moves an NFT from its current owner to another user, or burns it.
pub(crate) async fn move_nft(
    connection: &mut PgConnection,
    request: &MoveNft,
) -> Result<Nft, LedgerError> {
    if request.to == Some(request.from) {
        return Err(LedgerError::InvalidField {
            field: "to",
            reason: "the NFT already belongs to that user".into(),
        });
    }
    let recorded: Option<MovementRow> = sqlx::query_as(
        "SELECT id, nft_id, from_user_id, to_user_id, created_at FROM blockchain.nft_transfers WHERE id = $1",
    )
    .bind(request.id.as_uuid())
    .fetch_optional(&mut *connection)
    .await?;
    if let Some(recorded) = recorded {
        let same = recorded.nft_id == request.nft.as_uuid()
            && recorded.from_user_id == Some(request.from.as_uuid())
            && recorded.to_user_id == request.to.map(|user| user.as_uuid());
        return if same {
            nft(connection, request.nft).await
        } else {
            Err(LedgerError::NftConflict(request.nft))
        };
    }

    let moved: Option<NftRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH moved AS (
             UPDATE blockchain.nft_metadata
                SET owner_id = $3, burned_at = CASE WHEN $3::uuid IS NULL THEN now() END
              WHERE id = $2 AND owner_id = $4 AND burned_at IS NULL
             RETURNING {NFT_COLUMNS}
         ), recorded AS (
             INSERT INTO blockchain.nft_transfers (id, nft_id, from_user_id, to_user_id)
             SELECT $1, id, $4, $3 FROM moved
         )
         SELECT {NFT_COLUMNS} FROM moved"
    )))
    .bind(request.id.as_uuid())
    .bind(request.nft.as_uuid())
    .bind(request.to.map(|user| user.as_uuid()))
    .bind(request.from.as_uuid())
    .fetch_optional(&mut *connection)
    .await
    .map_err(|error| match LedgerError::from(error) {
        LedgerError::Db(db) if db.constraint() == Some("nft_metadata_owner_id_fkey") => {
            LedgerError::UserNotFound(request.to.unwrap_or(request.from))
        }
        other => other,
    })?;
    match moved {
        Some(row) => Ok(row.into()),
        // Nothing moved: say why, without naming the actual owner.
        None => {
            let current = nft(connection, request.nft).await?;
            Err(if current.burned_at.is_some() {
                LedgerError::NftBurned(request.nft)
            } else {
                LedgerError::NftNotOwned {
                    nft: request.nft,
                    claimed_owner: request.from,
                }
            })
        }
    }
}

pub(crate) async fn nft(connection: &mut PgConnection, id: NftId) -> Result<Nft, LedgerError> {
    let row: Option<NftRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {NFT_COLUMNS} FROM blockchain.nft_metadata WHERE id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    row.map(Nft::from).ok_or(LedgerError::NftNotFound(id))
}

/// NFTs `owner` holds now, oldest first.
pub(crate) async fn nfts_of(
    connection: &mut PgConnection,
    owner: UserId,
) -> Result<Vec<Nft>, LedgerError> {
    let rows: Vec<NftRow> = sqlx::query_as(sqlx::AssertSqlSafe(nfts_of_sql()))
        .bind(owner.as_uuid())
        .fetch_all(connection)
        .await?;
    Ok(rows.into_iter().map(Nft::from).collect())
}

/// The NFTs a user holds, oldest first ($1 owner).
pub(crate) fn nfts_of_sql() -> String {
    format!(
        "SELECT {NFT_COLUMNS} FROM blockchain.nft_metadata
          WHERE owner_id = $1 AND burned_at IS NULL ORDER BY minted_at, id"
    )
}

/// Every movement of an NFT, oldest first.
pub(crate) async fn history(
    connection: &mut PgConnection,
    id: NftId,
) -> Result<Vec<NftMovement>, LedgerError> {
    let rows: Vec<MovementRow> = sqlx::query_as(
        "SELECT id, nft_id, from_user_id, to_user_id, created_at FROM blockchain.nft_transfers
          WHERE nft_id = $1 ORDER BY created_at, (from_user_id IS NOT NULL), id",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *connection)
    .await?;
    if rows.is_empty() {
        nft(connection, id).await?;
    }
    Ok(rows.into_iter().map(NftMovement::from).collect())
}
