//! Wallets: opening, reading, limits, closing. Each function runs on a connection that the
//! caller has put in a transaction when it runs several statements.

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::rows::{WALLET_COLUMNS, WalletRow};
use crate::amount::Asset;
use crate::error::LedgerError;
use crate::ids::{UserId, WalletId};
use crate::model::{SystemWallet, Wallet};

/// The user's wallet of `asset`, created (bounded at zero) on first use.
pub(crate) async fn open_user_wallet(
    connection: &mut PgConnection,
    user: UserId,
    asset: &Asset,
) -> Result<Wallet, LedgerError> {
    let created = sqlx::query(
        "WITH new_wallet AS (
             INSERT INTO blockchain.wallets (id, user_id, asset, kind) VALUES ($1, $2, $3, 'user')
             ON CONFLICT (user_id, asset) WHERE kind = 'user' DO NOTHING
             RETURNING id, asset, shard_count
         )
         INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count, min_balance)
         SELECT id, 0, asset, shard_count, 0 FROM new_wallet",
    )
    .bind(Uuid::now_v7())
    .bind(user.as_uuid())
    .bind(asset.code())
    .execute(&mut *connection)
    .await;
    if let Err(error) = created {
        let error = LedgerError::from(error);
        return Err(match &error {
            LedgerError::Db(db) if db.constraint() == Some("wallets_user_id_fkey") => {
                LedgerError::UserNotFound(user)
            }
            _ => error,
        });
    }
    let query = format!(
        "{WALLET_COLUMNS} WHERE w.user_id = $1 AND w.asset = $2 AND w.kind = 'user' GROUP BY w.id"
    );
    let row: WalletRow = sqlx::query_as(AssertSqlSafe(query))
        .bind(user.as_uuid())
        .bind(asset.code())
        .fetch_one(connection)
        .await?;
    Wallet::try_from(row)
}

/// The system wallet of `kind` and `asset`, created over `shards` balance rows on first use:
/// the issuer unbounded (it is where money comes from), the others bounded at zero on every
/// row (they spend only what the issuer funded).
pub(crate) async fn system_wallet(
    connection: &mut PgConnection,
    kind: SystemWallet,
    asset: &Asset,
    shards: i16,
) -> Result<Wallet, LedgerError> {
    let id = system_wallet_id(connection, kind, asset, shards).await?;
    wallet(connection, id).await
}

/// The id of [`system_wallet`], without summing its balance (the issuer's, minus all that
/// circulates, need not be read to issue).
pub(crate) async fn system_wallet_id(
    connection: &mut PgConnection,
    kind: SystemWallet,
    asset: &Asset,
    shards: i16,
) -> Result<WalletId, LedgerError> {
    sqlx::query(
        "WITH new_wallet AS (
             INSERT INTO blockchain.wallets (id, asset, kind, shard_count) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, asset) WHERE kind <> 'user' DO NOTHING
             RETURNING id, asset, shard_count
         )
         INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count, min_balance)
         SELECT w.id, shard, w.asset, w.shard_count, CASE WHEN $3 = 'issuer' THEN NULL ELSE 0 END
           FROM new_wallet w, generate_series(0, w.shard_count - 1) AS shard",
    )
    .bind(Uuid::now_v7())
    .bind(asset.code())
    .bind(kind.as_str())
    .bind(shards.clamp(1, 64))
    .execute(&mut *connection)
    .await?;
    let id: Uuid =
        sqlx::query_scalar("SELECT id FROM blockchain.wallets WHERE kind = $1 AND asset = $2")
            .bind(kind.as_str())
            .bind(asset.code())
            .fetch_one(connection)
            .await?;
    Ok(WalletId(id))
}

pub(crate) async fn wallet(
    connection: &mut PgConnection,
    id: WalletId,
) -> Result<Wallet, LedgerError> {
    let query = format!("{WALLET_COLUMNS} WHERE w.id = $1 GROUP BY w.id");
    let row: Option<WalletRow> = sqlx::query_as(AssertSqlSafe(query))
        .bind(id.as_uuid())
        .fetch_optional(connection)
        .await?;
    row.ok_or(LedgerError::WalletNotFound(id))
        .and_then(Wallet::try_from)
}

pub(crate) async fn user_wallets(
    connection: &mut PgConnection,
    user: UserId,
) -> Result<Vec<Wallet>, LedgerError> {
    let query = format!("{WALLET_COLUMNS} WHERE w.user_id = $1 GROUP BY w.id ORDER BY w.asset");
    let rows: Vec<WalletRow> = sqlx::query_as(AssertSqlSafe(query))
        .bind(user.as_uuid())
        .fetch_all(connection)
        .await?;
    rows.into_iter().map(Wallet::try_from).collect()
}

/// Sets (or, with `None`, removes) the lowest balance a wallet may reach. A user wallet is
/// always bounded, at zero or above; a sharded wallet keeps the bound it was made with (each
/// of its rows is bounded on its own); a bound above what the wallet has now is refused.
pub(crate) async fn set_min_balance(
    connection: &mut PgConnection,
    id: WalletId,
    min_balance: Option<i64>,
) -> Result<Wallet, LedgerError> {
    let current: Option<(String, i16, i64, i64)> = sqlx::query_as(
        "SELECT w.kind, w.shard_count, b.posted, b.pending_debits
           FROM blockchain.wallets w
           JOIN blockchain.balances b ON b.wallet_id = w.id AND b.shard = 0
          WHERE w.id = $1
            FOR UPDATE OF b",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *connection)
    .await?;
    let (kind, shard_count, posted, held) = current.ok_or(LedgerError::WalletNotFound(id))?;
    let refuse = |reason: &str| {
        Err(LedgerError::LimitNotAllowed {
            wallet: id,
            reason: reason.to_owned(),
        })
    };
    match min_balance {
        None if kind == "user" => {
            return refuse("a user wallet is always bounded (at zero or above)");
        }
        Some(min) if kind == "user" && min < 0 => {
            return refuse("a user wallet can never go below zero");
        }
        _ if shard_count > 1 => {
            return refuse("a sharded wallet keeps its bound: each balance row is bounded alone");
        }
        None if kind != "issuer" => {
            return refuse("only the issuer is unbounded");
        }
        Some(min) if kind != "issuer" && min < 0 => {
            return refuse("only the issuer may go below zero");
        }
        _ => {}
    }
    let available = posted.saturating_sub(held);
    if let Some(min) = min_balance
        && available < min
    {
        return Err(LedgerError::LimitAboveBalance {
            wallet: id,
            min_balance: min,
            available,
        });
    }
    sqlx::query(
        "UPDATE blockchain.balances SET min_balance = $2 WHERE wallet_id = $1 AND shard = 0",
    )
    .bind(id.as_uuid())
    .bind(min_balance)
    .execute(&mut *connection)
    .await?;
    wallet(connection, id).await
}

/// Closes an empty wallet: no transfer may debit or credit it afterwards. A wallet that still
/// holds funds or holds is refused (they would be stranded).
pub(crate) async fn close_wallet(
    connection: &mut PgConnection,
    id: WalletId,
) -> Result<Wallet, LedgerError> {
    // All shards, in shard order: the global lock order of transfers.
    let shards: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT posted, pending_debits, pending_credits FROM blockchain.balances
          WHERE wallet_id = $1 ORDER BY shard FOR UPDATE",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *connection)
    .await?;
    if shards.is_empty() {
        return Err(LedgerError::WalletNotFound(id));
    }
    let posted: i128 = shards
        .iter()
        .map(|(posted, _, _)| i128::from(*posted))
        .sum();
    let held: i128 = shards
        .iter()
        .map(|(_, debits, credits)| i128::from(*debits) + i128::from(*credits))
        .sum();
    if posted != 0 || held != 0 {
        let clamp = |value: i128| {
            i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
        };
        return Err(LedgerError::WalletNotEmpty {
            wallet: id,
            posted: clamp(posted),
            held: clamp(held),
        });
    }
    sqlx::query(
        "WITH marked AS (UPDATE blockchain.balances SET closed = true WHERE wallet_id = $1 RETURNING 1)
         UPDATE blockchain.wallets SET closed_at = coalesce(closed_at, now()) WHERE id = $1",
    )
    .bind(id.as_uuid())
    .execute(&mut *connection)
    .await?;
    wallet(connection, id).await
}
