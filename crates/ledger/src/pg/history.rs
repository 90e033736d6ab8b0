//! A wallet's history: statements with running balances, and balances at a point in time.
//!
//! Each answer comes from one statement, so it is consistent with itself whatever commits
//! meanwhile. Neither reads the wallet's whole history: the first page of a statement starts
//! from the balance now, a deeper page from the wallet's last checkpoint before it, and a
//! balance at a moment from the checkpoint before that moment. Checkpoints are kept by
//! [`crate::Ledger::settle_history`] (migration blockchain V5 says why they are exact); until it has run, the reads
//! are still right, only longer.

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

/// The posted balance of `wallet` as of `at`. A transfer counts from its `created_at` (the
/// start of the transaction that made it).
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
         ), checkpoint AS (
             -- The wallet's last checkpoint before the page (none on the first page).
             SELECT c.seq, c.posted FROM blockchain.wallet_checkpoints c
              WHERE c.wallet_id = $1 AND c.seq < $2
              ORDER BY c.seq DESC LIMIT 1
         ), since AS (
             -- Posted changes between that checkpoint and the page.
             SELECT coalesce(sum(-t.amount) FILTER (WHERE t.kind IN ('transfer', 'post')), 0) AS change
               FROM blockchain.fodi_transactions t
              WHERE t.debit_wallet_id = $1 AND t.seq < $2
                AND t.seq > coalesce((SELECT checkpoint.seq FROM checkpoint), 0)
             UNION ALL
             SELECT coalesce(sum(t.amount) FILTER (WHERE t.kind IN ('transfer', 'post')), 0)
               FROM blockchain.fodi_transactions t
              WHERE t.credit_wallet_id = $1 AND t.seq < $2
                AND t.seq > coalesce((SELECT checkpoint.seq FROM checkpoint), 0)
         ), start AS (
             -- The balance after the page's newest entry: the balance now on the first page,
             -- else the checkpoint plus what came after it.
             SELECT CASE WHEN $2 IS NULL
                         THEN (SELECT coalesce(sum(b.posted), 0) FROM blockchain.balances b WHERE b.wallet_id = $1)
                         ELSE coalesce((SELECT checkpoint.posted FROM checkpoint), 0)
                              + (SELECT sum(since.change) FROM since)
                    END AS balance
         )
         SELECT page.id, page.seq, page.kind, page.counterparty, page.amount,
                CASE WHEN page.kind IN ('transfer', 'post') THEN page.amount ELSE 0 END AS posted_change,
                (start.balance - coalesce(sum(CASE WHEN page.kind IN ('transfer', 'post') THEN page.amount ELSE 0 END)
                     OVER (ORDER BY page.seq DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))::bigint
                    AS balance_after,
                page.reason, page.reference, page.created_at
           FROM page, start
          ORDER BY page.seq DESC";

/// A wallet's posted balance as of a time ($1 wallet, $2 time): the entries up to `lower`
/// (all created by then) from the wallet's checkpoints, plus those created by then among the
/// entries above `lower` and up to `upper` (past it, every settled entry was created later)
/// and among the entries not settled yet. See migration blockchain V5.
pub(crate) const BALANCE_AT_SQL: &str = "WITH horizon AS (
             SELECT h.settled_seq FROM blockchain.history_horizon h
         ), lower AS (
             SELECT coalesce((SELECT s.upper_seq FROM blockchain.history_segments s
                               WHERE s.marked_at <= $2
                               ORDER BY s.marked_at DESC, s.upper_seq DESC LIMIT 1), 0) AS seq
         ), upper AS (
             SELECT coalesce((SELECT s.lower_seq FROM blockchain.history_segments s
                               WHERE s.later_min_created_at > $2
                               ORDER BY s.later_min_created_at, s.upper_seq LIMIT 1),
                             (SELECT horizon.settled_seq FROM horizon)) AS seq
         ), checkpoint AS (
             SELECT c.seq, c.posted FROM blockchain.wallet_checkpoints c
              WHERE c.wallet_id = $1 AND c.seq <= (SELECT lower.seq FROM lower)
              ORDER BY c.seq DESC LIMIT 1
         ), counted AS (
             -- From the checkpoint to `lower`: every entry counts.
             SELECT t.seq, CASE WHEN t.credit_wallet_id = $1 THEN t.amount ELSE -t.amount END AS change,
                    t.kind, t.created_at, true AS before_lower
               FROM blockchain.fodi_transactions t
              WHERE t.debit_wallet_id = $1
                AND t.seq > coalesce((SELECT checkpoint.seq FROM checkpoint), 0)
                AND t.seq <= (SELECT lower.seq FROM lower)
             UNION ALL
             SELECT t.seq, t.amount, t.kind, t.created_at, true
               FROM blockchain.fodi_transactions t
              WHERE t.credit_wallet_id = $1
                AND t.seq > coalesce((SELECT checkpoint.seq FROM checkpoint), 0)
                AND t.seq <= (SELECT lower.seq FROM lower)
             -- Above it: only what was created by then, up to `upper` and past the horizon.
             UNION ALL
             SELECT t.seq, -t.amount, t.kind, t.created_at, false
               FROM blockchain.fodi_transactions t
              WHERE t.debit_wallet_id = $1 AND t.seq > (SELECT lower.seq FROM lower)
                AND t.seq <= (SELECT upper.seq FROM upper)
             UNION ALL
             SELECT t.seq, t.amount, t.kind, t.created_at, false
               FROM blockchain.fodi_transactions t
              WHERE t.credit_wallet_id = $1 AND t.seq > (SELECT lower.seq FROM lower)
                AND t.seq <= (SELECT upper.seq FROM upper)
             UNION ALL
             SELECT t.seq, -t.amount, t.kind, t.created_at, false
               FROM blockchain.fodi_transactions t
              WHERE t.debit_wallet_id = $1
                AND t.seq > greatest((SELECT horizon.settled_seq FROM horizon), (SELECT lower.seq FROM lower))
             UNION ALL
             SELECT t.seq, t.amount, t.kind, t.created_at, false
               FROM blockchain.fodi_transactions t
              WHERE t.credit_wallet_id = $1
                AND t.seq > greatest((SELECT horizon.settled_seq FROM horizon), (SELECT lower.seq FROM lower))
         )
         SELECT CASE WHEN EXISTS (SELECT 1 FROM blockchain.wallets w WHERE w.id = $1)
                     THEN (coalesce((SELECT checkpoint.posted FROM checkpoint), 0)
                           + coalesce((SELECT sum(counted.change) FROM counted
                                        WHERE counted.kind IN ('transfer', 'post')
                                          AND (counted.before_lower OR counted.created_at <= $2)), 0))::bigint
                END";

/// One step of settling the history up to the newest final entry: at most `max_seqs` sequence
/// numbers, writing the wallets' checkpoints; returns how many it settled (0: nothing left).
/// `blockchain.advance_history` refuses to share its transaction, so `connection` must hold
/// none of this caller's work: each step is a transaction (a unit) of its own. A mark taken by
/// one step becomes final once every transaction running at that moment has ended, so a later
/// step settles what this one saw.
pub(crate) async fn settle_step(
    connection: &mut PgConnection,
    max_seqs: u32,
) -> Result<u64, LedgerError> {
    let step: i64 = sqlx::query_scalar("SELECT blockchain.advance_history($1, $2)")
        .bind(i64::from(max_seqs.max(1)))
        .bind(CHECKPOINT_EVERY)
        .fetch_one(&mut *connection)
        .await?;
    Ok(u64::try_from(step).unwrap_or(0))
}

/// Entries between two checkpoints of a wallet, at most: what a history read scans beyond
/// the entries it returns, besides those not settled yet.
pub const CHECKPOINT_EVERY: i32 = 1_000;
