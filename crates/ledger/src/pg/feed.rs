//! The change feed: committed transfers in ledger order, for consumers in other processes.
//!
//! Transfers are read in position order `(tx_id, seq)`, and only below the oldest transaction
//! still running: no transfer can later commit with a smaller position, so a consumer that
//! remembers the last position it handled never misses one and never sees one twice. The
//! feed lags by the age of the oldest open transaction, normally milliseconds.

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection};

use super::rows::{TRANSFER_COLUMNS, TransferRow};
use crate::error::LedgerError;
use crate::model::FeedPage;
use crate::model::{Position, Transfer};

/// Largest page of the feed.
pub const MAX_FEED_PAGE: u32 = 10_000;

/// Follows the feed from its head for as long as the future runs, handing each committed
/// transfer to `deliver` in ledger order: pages of up to 500, a pause of `poll` when the feed
/// had nothing new, and a pause of a second (with a warning) while the database fails.
/// Nothing is skipped across failures: it resumes after the last transfer delivered.
pub async fn follow(ledger: &dyn crate::Ledger, poll: Duration, mut deliver: impl FnMut(Transfer)) {
    const PAGE: u32 = 500;
    const RETRY: Duration = Duration::from_secs(1);
    let mut position = loop {
        match ledger.feed_head().await {
            Ok(head) => break head,
            Err(error) => {
                tracing::warn!(%error, "cannot read the ledger's feed head yet");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    loop {
        match ledger.changes_after(position, PAGE).await {
            Ok(page) => {
                let full = page.transfers.len() == PAGE as usize;
                page.transfers.into_iter().for_each(&mut deliver);
                position = page.next;
                if !full {
                    tokio::time::sleep(poll).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the ledger's feed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The next final transfers after a position, in position order: only below the oldest
/// transaction still running (`$3`: how many at most). The sealer reads with it too.
pub(crate) fn final_transfers_sql() -> String {
    format!(
        "SELECT {TRANSFER_COLUMNS} FROM blockchain.fodi_transactions t
          WHERE t.tx_id >= $1 AND (t.tx_id, t.seq) > ($1, $2)
            AND t.tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
          ORDER BY t.tx_id, t.seq
          LIMIT $3"
    )
}

pub(crate) async fn final_transfers_after(
    connection: &mut PgConnection,
    after: Position,
    limit: u32,
) -> Result<Vec<TransferRow>, LedgerError> {
    Ok(sqlx::query_as(AssertSqlSafe(final_transfers_sql()))
        .bind(after.tx_id)
        .bind(after.seq)
        .bind(i64::from(limit.max(1)))
        .fetch_all(connection)
        .await?)
}

/// Final transfers after `after`, at most `limit`.
pub(crate) async fn changes_after(
    connection: &mut PgConnection,
    after: Position,
    limit: u32,
) -> Result<FeedPage, LedgerError> {
    let rows = final_transfers_after(connection, after, limit.clamp(1, MAX_FEED_PAGE)).await?;
    let transfers = rows
        .into_iter()
        .map(Transfer::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next = transfers.last().map_or(after, |transfer| transfer.position);
    Ok(FeedPage { transfers, next })
}

/// The position of the newest final transfer ([`Position::START`] when there is none): where
/// a consumer interested only in what happens from now on starts.
pub(crate) async fn head(connection: &mut PgConnection) -> Result<Position, LedgerError> {
    let newest: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id, seq FROM blockchain.fodi_transactions
          WHERE tx_id < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
          ORDER BY tx_id DESC, seq DESC LIMIT 1",
    )
    .fetch_optional(connection)
    .await?;
    Ok(newest.map_or(Position::START, |(tx_id, seq)| Position { tx_id, seq }))
}

/// The position `consumer` saved last, or [`Position::START`].
pub(crate) async fn cursor(
    connection: &mut PgConnection,
    consumer: &str,
) -> Result<Position, LedgerError> {
    let saved: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx_id, seq FROM blockchain.feed_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(connection)
            .await?;
    Ok(saved.map_or(Position::START, |(tx_id, seq)| Position { tx_id, seq }))
}

/// Saves `consumer`'s position. Inside the consumer's own transaction, it commits together
/// with whatever the consumer did with the transfers: exactly-once processing.
pub(crate) async fn save_cursor(
    connection: &mut PgConnection,
    consumer: &str,
    position: Position,
) -> Result<(), LedgerError> {
    if consumer.is_empty() || consumer.chars().count() > 100 {
        return Err(LedgerError::InvalidField {
            field: "consumer",
            reason: "must be 1 to 100 characters".into(),
        });
    }
    sqlx::query(
        "INSERT INTO blockchain.feed_cursors (consumer, tx_id, seq) VALUES ($1, $2, $3)
         ON CONFLICT (consumer) DO UPDATE SET tx_id = excluded.tx_id, seq = excluded.seq",
    )
    .bind(consumer)
    .bind(position.tx_id)
    .bind(position.seq)
    .execute(connection)
    .await?;
    Ok(())
}
