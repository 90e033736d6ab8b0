//! The ledger's invariants, recomputed from the transfer history:
//!
//! 1. per asset, posted balances sum to zero, and holds on debits equal holds on credits;
//! 2. every wallet's posted balance equals what its transfers posted;
//! 3. every wallet's holds equal its open pending transfers;
//! 4. no wallet is below its minimum, and no wallet but the issuer is unbounded or bounded below
//!    zero (a sharded wallet on each of its balance rows);
//! 5. per asset, what circulates (every wallet but the issuer) is minus the issuer's balance:
//!    money exists only by issuance.
//!
//! Everything is read in one REPEATABLE READ snapshot, so concurrent transfers cannot make a
//! consistent ledger look inconsistent. It reads the whole history: meant for tests, audits and
//! periodic checks, not for the request path.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ids::WalletId;
use crate::model::{InvariantReport, Violation};

/// Runs on `transaction`, just begun (by the caller: the isolation level is set here, which a
/// savepoint could no longer do).
pub(crate) async fn check(transaction: &mut PgConnection) -> Result<InvariantReport, LedgerError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let mut violations = Vec::new();

    // Sums are numeric: they may exceed 64 bits even where no single balance does.
    let assets: Vec<(String, String, String, String, bool)> = sqlx::query_as(
        "SELECT w.asset, sum(b.posted)::text, sum(b.pending_debits)::text, sum(b.pending_credits)::text,
                sum(b.posted) = 0 AND sum(b.pending_debits) = sum(b.pending_credits)
           FROM blockchain.wallets w JOIN blockchain.balances b ON b.wallet_id = w.id
          GROUP BY w.asset ORDER BY w.asset",
    )
    .fetch_all(&mut *transaction)
    .await?;
    for (asset, posted_sum, pending_debits_sum, pending_credits_sum, balanced) in &assets {
        if !balanced {
            violations.push(Violation::AssetNotBalanced {
                asset: asset.clone(),
                posted_sum: posted_sum.clone(),
                pending_debits_sum: pending_debits_sum.clone(),
                pending_credits_sum: pending_credits_sum.clone(),
            });
        }
    }

    let mismatched: Vec<(Uuid, String, String)> = sqlx::query_as(
        "WITH stored AS (
             SELECT wallet_id, sum(posted) AS posted FROM blockchain.balances GROUP BY wallet_id
         ), moved AS (
             SELECT wallet_id, sum(change) AS posted FROM (
                 SELECT debit_wallet_id AS wallet_id, -amount::numeric AS change FROM blockchain.fodi_transactions
                  WHERE kind IN ('transfer', 'post')
                 UNION ALL
                 SELECT credit_wallet_id, amount::numeric FROM blockchain.fodi_transactions
                  WHERE kind IN ('transfer', 'post')) entries
             GROUP BY wallet_id
         )
         SELECT coalesce(stored.wallet_id, moved.wallet_id), coalesce(stored.posted, 0)::text, coalesce(moved.posted, 0)::text
           FROM stored FULL JOIN moved ON moved.wallet_id = stored.wallet_id
          WHERE coalesce(stored.posted, 0) <> coalesce(moved.posted, 0)
          ORDER BY 1",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(
        mismatched.into_iter().map(
            |(wallet, stored, from_transfers)| Violation::BalanceMismatch {
                wallet: WalletId(wallet),
                stored,
                from_transfers,
            },
        ),
    );

    let holds: Vec<(Uuid, i64, String, i64, String)> = sqlx::query_as(
        "WITH open AS (
             SELECT t.debit_wallet_id, t.credit_wallet_id, t.amount
               FROM blockchain.pending_holds h JOIN blockchain.fodi_transactions t ON t.id = h.pending_id
         ), stored AS (
             SELECT wallet_id, sum(pending_debits)::bigint AS debits, sum(pending_credits)::bigint AS credits
               FROM blockchain.balances GROUP BY wallet_id
         )
         SELECT stored.wallet_id, stored.debits,
                coalesce((SELECT sum(amount) FROM open WHERE open.debit_wallet_id = stored.wallet_id), 0)::text,
                stored.credits,
                coalesce((SELECT sum(amount) FROM open WHERE open.credit_wallet_id = stored.wallet_id), 0)::text
           FROM stored
          WHERE stored.debits::numeric <> coalesce((SELECT sum(amount) FROM open WHERE open.debit_wallet_id = stored.wallet_id), 0)
             OR stored.credits::numeric <> coalesce((SELECT sum(amount) FROM open WHERE open.credit_wallet_id = stored.wallet_id), 0)
          ORDER BY 1",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(holds.into_iter().map(
        |(wallet, stored_debits, open_debits, stored_credits, open_credits)| {
            Violation::HoldMismatch {
                wallet: WalletId(wallet),
                stored_debits,
                open_debits,
                stored_credits,
                open_credits,
            }
        },
    ));

    let below: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT wallet_id, posted - pending_debits, min_balance FROM blockchain.balances
          WHERE min_balance IS NOT NULL AND posted - pending_debits < min_balance ORDER BY 1",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(below.into_iter().map(|(wallet, available, min_balance)| {
        Violation::BelowMinimum {
            wallet: WalletId(wallet),
            available,
            min_balance,
        }
    }));

    let unbounded: Vec<(Uuid, Option<i64>)> = sqlx::query_as(
        "SELECT w.id, b.min_balance FROM blockchain.wallets w
           JOIN blockchain.balances b ON b.wallet_id = w.id AND b.shard = 0
          WHERE w.kind = 'user' AND (b.min_balance IS NULL OR b.min_balance < 0) ORDER BY 1",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(unbounded.into_iter().map(|(wallet, min_balance)| {
        Violation::UserWalletUnbounded {
            wallet: WalletId(wallet),
            min_balance,
        }
    }));

    let unbounded_system: Vec<(Uuid, i16, Option<i64>)> = sqlx::query_as(
        "SELECT w.id, b.shard, b.min_balance FROM blockchain.wallets w
           JOIN blockchain.balances b ON b.wallet_id = w.id
          WHERE w.kind IN ('rewards_pool', 'fees') AND (b.min_balance IS NULL OR b.min_balance < 0)
          ORDER BY 1, 2",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(
        unbounded_system
            .into_iter()
            .map(
                |(wallet, shard, min_balance)| Violation::SystemWalletUnbounded {
                    wallet: WalletId(wallet),
                    shard,
                    min_balance,
                },
            ),
    );

    // An asset with wallets but no transfers needs no issuer yet.
    let unissued: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT w.asset, coalesce(sum(b.posted) FILTER (WHERE w.kind <> 'issuer'), 0)::text,
                sum(b.posted) FILTER (WHERE w.kind = 'issuer')::text
           FROM blockchain.wallets w JOIN blockchain.balances b ON b.wallet_id = w.id
          GROUP BY w.asset
         HAVING count(DISTINCT w.id) FILTER (WHERE w.kind = 'issuer') > 1
             OR coalesce(sum(b.posted) FILTER (WHERE w.kind <> 'issuer'), 0)
                <> -coalesce(sum(b.posted) FILTER (WHERE w.kind = 'issuer'), 0)
          ORDER BY 1",
    )
    .fetch_all(&mut *transaction)
    .await?;
    violations.extend(unissued.into_iter().map(|(asset, supply, issuer_balance)| {
        Violation::SupplyNotIssued {
            asset,
            supply,
            issuer_balance,
        }
    }));

    let (wallets, transfers): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM blockchain.wallets), (SELECT count(*) FROM blockchain.fodi_transactions)",
    )
    .fetch_one(&mut *transaction)
    .await?;
    Ok(InvariantReport {
        assets: assets.len() as i64,
        wallets,
        transfers,
        violations,
    })
}
