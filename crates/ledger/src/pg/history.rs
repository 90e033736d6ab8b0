//! A wallet's history: statements with running balances, and balances at a point in time.
//!
//! Each answer comes from one statement, so it is consistent with itself: the running balance
//! of a page is the wallet's posted balance minus everything newer than the page, all read in
//! one snapshot, whatever commits meanwhile.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ids::{TransferId, WalletId};
use crate::model::{Statement, StatementEntry, TransferKind};

/// Largest page a read returns (statements, rewards, blocks).
pub const MAX_PAGE: u32 = 500;

/// `limit` as a page size: 1 to [`MAX_PAGE`], else [`LedgerError::InvalidField`].
pub(crate) fn page_size(limit: u32) -> Result<i64, LedgerError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(LedgerError::InvalidField {
            field: "limit",
            reason: format!("must be 1 to {MAX_PAGE}, got {limit}"),
        });
    }
    Ok(i64::from(limit))
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: Uuid,
    seq: i64,
    kind: String,
    counterparty: Uuid,
    amount: i64,
    posted_change: i64,
    balance_after: i64,
    reason: Option<String>,
    reference: Option<String>,
    created_at: DateTime<Utc>,
}

/// Entries of `wallet` older than `before` (a seq; `None`: from the newest), newest first.
pub(crate) async fn statement(
    connection: &mut PgConnection,
    wallet: WalletId,
    before: Option<i64>,
    limit: u32,
) -> Result<Statement, LedgerError> {
    let limit = page_size(limit)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM blockchain.wallets WHERE id = $1)")
            .bind(wallet.as_uuid())
            .fetch_one(&mut *connection)
            .await?;
    if !exists {
        return Err(LedgerError::WalletNotFound(wallet));
    }
    // Each side of the wallet's entries comes from its own index (debit or credit).
    let rows: Vec<EntryRow> = sqlx::query_as(STATEMENT_SQL)
        .bind(wallet.as_uuid())
        .bind(before)
        .bind(limit)
        .fetch_all(connection)
        .await?;

    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|row| row.seq))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|row| {
            Ok(StatementEntry {
                transfer_id: TransferId(row.id),
                seq: row.seq,
                kind: TransferKind::parse(&row.kind).ok_or_else(|| {
                    LedgerError::UnexpectedResult(format!("transfer kind {:?}", row.kind))
                })?,
                counterparty: WalletId(row.counterparty),
                amount: row.amount,
                posted_change: row.posted_change,
                balance_after: row.balance_after,
                reason: row.reason,
                reference: row.reference,
                created_at: row.created_at,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok(Statement {
        wallet,
        entries,
        next_before,
    })
}

/// The posted balance of `wallet` as of `at`: its balance now minus what was posted after.
/// A transfer counts from its `created_at` (the start of the transaction that made it).
pub(crate) async fn balance_at(
    connection: &mut PgConnection,
    wallet: WalletId,
    at: DateTime<Utc>,
) -> Result<i64, LedgerError> {
    let balance: Option<i64> = sqlx::query_scalar(BALANCE_AT_SQL)
        .bind(wallet.as_uuid())
        .bind(at)
        .fetch_one(connection)
        .await?;
    balance.ok_or(LedgerError::WalletNotFound(wallet))
}

/// A page of a wallet's entries with running balances ($1 wallet, $2 before seq, $3 limit).
pub(crate) const STATEMENT_SQL: &str = "WITH page AS (
             (SELECT t.id, t.seq, t.kind, t.credit_wallet_id AS counterparty, -t.amount AS amount,
                     t.reason, t.reference, t.created_at
                FROM blockchain.fodi_transactions t
               WHERE t.debit_wallet_id = $1 AND t.seq < coalesce($2, 9223372036854775807)
               ORDER BY t.seq DESC LIMIT $3)
             UNION ALL
             (SELECT t.id, t.seq, t.kind, t.debit_wallet_id, t.amount, t.reason, t.reference, t.created_at
                FROM blockchain.fodi_transactions t
               WHERE t.credit_wallet_id = $1 AND t.seq < coalesce($2, 9223372036854775807)
               ORDER BY t.seq DESC LIMIT $3)
             ORDER BY seq DESC LIMIT $3
         ), newer AS (
             SELECT coalesce(sum(-t.amount) FILTER (WHERE t.kind IN ('transfer', 'post')), 0) AS change
               FROM blockchain.fodi_transactions t
              WHERE t.debit_wallet_id = $1 AND t.seq >= coalesce($2, 9223372036854775807)
             UNION ALL
             SELECT coalesce(sum(t.amount) FILTER (WHERE t.kind IN ('transfer', 'post')), 0)
               FROM blockchain.fodi_transactions t
              WHERE t.credit_wallet_id = $1 AND t.seq >= coalesce($2, 9223372036854775807)
         ), start AS (
             SELECT (SELECT coalesce(sum(b.posted), 0) FROM blockchain.balances b WHERE b.wallet_id = $1)
                    - (SELECT sum(newer.change) FROM newer) AS balance
         )
         SELECT page.id, page.seq, page.kind, page.counterparty, page.amount,
                CASE WHEN page.kind IN ('transfer', 'post') THEN page.amount ELSE 0 END AS posted_change,
                (start.balance - coalesce(sum(CASE WHEN page.kind IN ('transfer', 'post') THEN page.amount ELSE 0 END)
                     OVER (ORDER BY page.seq DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))::bigint
                    AS balance_after,
                page.reason, page.reference, page.created_at
           FROM page, start
          ORDER BY page.seq DESC";

/// A wallet's posted balance as of a time ($1 wallet, $2 time).
pub(crate) const BALANCE_AT_SQL: &str = "SELECT ((SELECT sum(b.posted) FROM blockchain.balances b WHERE b.wallet_id = $1)
                 - coalesce((SELECT sum(CASE WHEN t.credit_wallet_id = $1 THEN t.amount ELSE -t.amount END)
                               FROM blockchain.fodi_transactions t
                              WHERE (t.debit_wallet_id = $1 OR t.credit_wallet_id = $1)
                                AND t.kind IN ('transfer', 'post') AND t.created_at > $2), 0))::bigint";
