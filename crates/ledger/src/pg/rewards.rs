//! Rewards: a payment from the rewards pool to a user, at most once per
//! `(user, reason, reference)`.
//!
//! The reward's transfer id is derived from that triple (UUIDv5), so even two concurrent
//! requests race on one transfer id: the engine applies it once and the other replays it.

use chrono::{DateTime, Utc};
use db_core::DbError;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{engine, wallets};
use crate::amount::Amount;
use crate::error::LedgerError;
use crate::ids::{TransferId, UserId, namespaces};
use crate::model::{BatchMode, SystemWallet, TransferRequest};
use crate::model::{Reward, RewardRequest};

#[derive(sqlx::FromRow)]
struct RewardRow {
    id: Uuid,
    user_id: Uuid,
    reason: String,
    reference: String,
    amount: i64,
    order_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl RewardRow {
    fn into_reward(self, replayed: bool) -> Result<Reward, LedgerError> {
        Ok(Reward {
            id: TransferId(self.id),
            user: UserId(self.user_id),
            reason: self.reason,
            reference: self.reference,
            amount: Amount::new(self.amount)?,
            order_id: self.order_id,
            created_at: self.created_at,
            replayed,
        })
    }
}

/// The transfer id of the reward for `(user, reason, reference)`.
pub fn reward_transfer_id(user: UserId, reason: &str, reference: &str) -> TransferId {
    // Lengths first, so ("ab", "c") and ("a", "bc") cannot collide.
    let key = format!(
        "{}:{}:{reason}:{}:{reference}",
        user.as_uuid(),
        reason.len(),
        reference.len()
    );
    TransferId(Uuid::new_v5(&namespaces::REWARD, key.as_bytes()))
}

/// Pays `request` unless it was paid already; runs several statements, so `connection` should
/// be in a transaction.
pub(crate) async fn pay(
    connection: &mut PgConnection,
    request: &RewardRequest,
    pool_shards: i16,
) -> Result<Reward, LedgerError> {
    if let Some(existing) = find(connection, request).await? {
        return same_terms(existing, request);
    }
    let pool = wallets::system_wallet_id(
        connection,
        SystemWallet::RewardsPool,
        &request.asset,
        pool_shards,
    )
    .await?;
    let wallet = wallets::open_user_wallet(connection, request.user, &request.asset).await?;
    let id = reward_transfer_id(request.user, &request.reason, &request.reference);
    let transfer = TransferRequest::transfer(pool, wallet.id, request.amount)
        .with_id(id)
        .with_reason(request.reason.clone())
        .with_reference(request.reference.clone());
    let transfer = match &request.submitted_by {
        Some(submitter) => transfer.submitted_by(submitter.clone()),
        None => transfer,
    };
    let mut results = engine::submit(connection, &[transfer], BatchMode::Linked).await?;
    let applied = results
        .pop()
        .ok_or_else(|| LedgerError::UnexpectedResult("no transfer result".into()))?;
    match applied {
        // A concurrent request paid it: its reward row is committed with its transfer.
        Ok(applied) if applied.replayed => match find(connection, request).await? {
            Some(existing) => same_terms(existing, request),
            None => Err(LedgerError::UnexpectedResult(
                "reward transfer without its reward".into(),
            )),
        },
        Ok(applied) => {
            let row: RewardRow = sqlx::query_as(
                "INSERT INTO blockchain.reward_history (id, user_id, reason, reference, order_id, amount, transaction_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $1)
                 RETURNING id, user_id, reason, reference, amount, order_id, created_at",
            )
            .bind(applied.transfer.id.as_uuid())
            .bind(request.user.as_uuid())
            .bind(&request.reason)
            .bind(&request.reference)
            .bind(request.order_id)
            .bind(request.amount.units())
            .fetch_one(connection)
            .await
            .map_err(|error| match DbError::from(error) {
                db if db.constraint() == Some("reward_history_order_id_fkey") => {
                    LedgerError::InvalidField { field: "order_id", reason: "no such order".into() }
                }
                db => LedgerError::Db(db),
            })?;
            row.into_reward(false)
        }
        // The same triple with another amount: the transfer id exists with other fields.
        Err(LedgerError::IdConflict { .. }) => Err(conflict(request)),
        Err(error) => Err(error),
    }
}

/// Rewards paid to `user`, newest first.
pub(crate) async fn rewards_of(
    connection: &mut PgConnection,
    user: UserId,
    limit: u32,
) -> Result<Vec<Reward>, LedgerError> {
    let rows: Vec<RewardRow> = sqlx::query_as(REWARDS_OF_SQL)
        .bind(user.as_uuid())
        .bind(super::history::page_size(limit)?)
        .fetch_all(connection)
        .await?;
    rows.into_iter().map(|row| row.into_reward(false)).collect()
}

async fn find(
    connection: &mut PgConnection,
    request: &RewardRequest,
) -> Result<Option<RewardRow>, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, reason, reference, amount, order_id, created_at FROM blockchain.reward_history
          WHERE user_id = $1 AND reason = $2 AND reference = $3",
    )
    .bind(request.user.as_uuid())
    .bind(&request.reason)
    .bind(&request.reference)
    .fetch_optional(connection)
    .await?)
}

fn same_terms(existing: RewardRow, request: &RewardRequest) -> Result<Reward, LedgerError> {
    if existing.amount == request.amount.units() && existing.order_id == request.order_id {
        existing.into_reward(true)
    } else {
        Err(conflict(request))
    }
}

fn conflict(request: &RewardRequest) -> LedgerError {
    LedgerError::RewardConflict {
        user: request.user,
        reason: request.reason.clone(),
        reference: request.reference.clone(),
    }
}

/// A user's rewards, newest first ($1 user, $2 limit).
pub(crate) const REWARDS_OF_SQL: &str = "SELECT id, user_id, reason, reference, amount, order_id, created_at FROM blockchain.reward_history
          WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";
