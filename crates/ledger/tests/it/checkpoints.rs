//! History checkpoints: statements and balances at a moment read from them must agree, entry
//! for entry, with the whole history, whatever was running while the history was settled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use db_core::sqlx::{self, PgPool};
use ledger::{Ledger, TransferKind, TransferRequest, Wallet, WalletId};

use crate::support::{Fixture, units};

/// A wallet's entries from the table itself: (seq, created_at, posted change), oldest first.
async fn entries_of(pool: &PgPool, wallet: WalletId) -> Vec<(i64, DateTime<Utc>, i64)> {
    sqlx::query_as(
        "SELECT seq, created_at,
                CASE WHEN kind NOT IN ('transfer', 'post') THEN 0
                     WHEN credit_wallet_id = $1 THEN amount ELSE -amount END
           FROM blockchain.fodi_transactions
          WHERE debit_wallet_id = $1 OR credit_wallet_id = $1
          ORDER BY seq",
    )
    .bind(wallet.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap()
}

/// One step of the settler with a small checkpoint spacing, so that a short test crosses many.
async fn settle_step(pool: &PgPool, max_seqs: i64, every: i32) -> i64 {
    sqlx::query_scalar("SELECT blockchain.advance_history($1, $2)")
        .bind(max_seqs)
        .bind(every)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Settles until everything written is settled (the last seq drawn), a step at a time. A mark
/// becomes final once every older transaction of the cluster has ended: other tests'
/// transactions (other databases, same cluster) can delay it a little.
async fn settle_all(pool: &PgPool, every: i32) {
    let last: i64 =
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM blockchain.fodi_transactions")
            .fetch_one(pool)
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while settled_seq(pool).await < last {
        assert!(std::time::Instant::now() < deadline, "never settled");
        settle_step(pool, 1_000, every).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn settled_seq(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT settled_seq FROM blockchain.history_horizon")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every page of every wallet's statement, and its balance at each moment, against sums over
/// the whole history; and the checkpoints themselves.
async fn assert_history_agrees(
    fx: &Fixture,
    wallets: &[Wallet],
    moments: &[DateTime<Utc>],
    every: i32,
) {
    let pool = fx.db.pool();
    for wallet in wallets {
        let entries = entries_of(pool, wallet.id).await;
        let mut running = Vec::with_capacity(entries.len());
        let mut balance = 0;
        for (seq, _, change) in &entries {
            balance += change;
            running.push((*seq, balance));
        }

        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = fx.ledger.statement(wallet.id, before, 37).await.unwrap();
            seen.extend(page.entries.iter().map(|e| (e.seq, e.balance_after)));
            match page.next_before {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        seen.reverse();
        assert_eq!(seen, running, "statement of {}", wallet.id);

        let mut probes: Vec<DateTime<Utc>> = moments.to_vec();
        for (_, created_at, _) in entries.iter().step_by(17) {
            probes.extend([*created_at, *created_at - chrono::Duration::microseconds(1)]);
        }
        for at in probes {
            let expected: i64 = entries
                .iter()
                .filter(|(_, created_at, _)| *created_at <= at)
                .map(|(_, _, change)| change)
                .sum();
            let got = fx.ledger.balance_at(wallet.id, at).await.unwrap();
            assert_eq!(got, expected, "balance of {} at {at}", wallet.id);
        }

        let checkpoints: Vec<(i64, i64, i32)> = sqlx::query_as(
            "SELECT seq, posted, entries FROM blockchain.wallet_checkpoints
              WHERE wallet_id = $1 ORDER BY seq",
        )
        .bind(wallet.id.as_uuid())
        .fetch_all(pool)
        .await
        .unwrap();
        let mut previous = 0;
        for (seq, posted, count) in checkpoints {
            let at = running.iter().position(|(s, _)| *s == seq).unwrap();
            assert_eq!(posted, running[at].1, "checkpoint at seq {seq}");
            let since = running[..=at].iter().filter(|(s, _)| *s > previous).count();
            assert_eq!(
                since as i32, count,
                "entries counted by the checkpoint at {seq}"
            );
            assert!(count <= every, "checkpoints {every} entries apart at most");
            previous = seq;
        }
    }
}

#[tokio::test]
async fn reads_from_checkpoints_match_the_whole_history_under_concurrent_writes() {
    const EVERY: i32 = 7;
    let fx = Arc::new(Fixture::new().await);
    let mut wallets = Vec::new();
    for _ in 0..5 {
        wallets.push(fx.funded(1_000_000).await);
    }
    let wallets = Arc::new(wallets);

    // The settler runs in small steps all along, racing the writers.
    let done = Arc::new(AtomicBool::new(false));
    let settler = {
        let (fx, done) = (fx.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                settle_step(fx.db.pool(), 13, EVERY).await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for client in 0..8usize {
        let (fx, wallets) = (fx.clone(), wallets.clone());
        writers.push(tokio::spawn(async move {
            let mut moments = Vec::new();
            for round in 0..40usize {
                let from = &wallets[(client + round) % wallets.len()];
                let to = &wallets[(client + 2 * round + 1) % wallets.len()];
                if from.id == to.id {
                    continue;
                }
                let amount = units(1 + (client * 7 + round * 3) as i64 % 50);
                if round % 5 == 0 {
                    // A hold, then posted or voided: entries that change nothing posted.
                    let hold =
                        TransferRequest::hold(from.id, to.id, amount, Duration::from_secs(60));
                    let held = fx.ledger.transfer(hold).await.unwrap();
                    let resolve = if round % 10 == 0 {
                        TransferRequest::post(held.transfer.id, None)
                    } else {
                        TransferRequest::void(held.transfer.id)
                    };
                    fx.ledger.transfer(resolve).await.unwrap();
                } else {
                    fx.ledger
                        .transfer(TransferRequest::transfer(from.id, to.id, amount))
                        .await
                        .unwrap();
                }
                if round % 8 == 0 {
                    moments.push(Utc::now());
                }
            }
            moments
        }));
    }
    let mut moments = Vec::new();
    for writer in writers {
        moments.extend(writer.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    settler.await.unwrap();

    // Half settled: the reads combine checkpoints with what is not settled yet.
    assert_history_agrees(&fx, &wallets, &moments, EVERY).await;
    // Everything settled.
    settle_all(fx.db.pool(), EVERY).await;
    let segments: i64 = sqlx::query_scalar("SELECT count(*) FROM blockchain.history_segments")
        .fetch_one(fx.db.pool())
        .await
        .unwrap();
    // How many steps found something final depends on the cluster's other transactions
    // (other tests): at least the racing run and the final one.
    assert!(
        segments >= 2,
        "the settler ran in several steps: {segments}"
    );
    assert_history_agrees(&fx, &wallets, &moments, EVERY).await;
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_transaction_still_running_holds_the_settled_prefix_back() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(1_000).await);
    let (carol, dave) = (fx.funded(1_000).await, fx.funded(1_000).await);
    let pool = fx.db.pool();

    // An embedder's transaction draws a seq and stays open...
    let mut open = pool.begin().await.unwrap();
    let early = fx
        .ledger
        .on(&mut open)
        .transfer(&TransferRequest::transfer(alice.id, bob.id, units(100)))
        .await
        .unwrap();
    // ...while a later transfer, between other wallets, commits with a higher seq.
    let late = fx
        .ledger
        .transfer(TransferRequest::transfer(carol.id, dave.id, units(30)))
        .await
        .unwrap();
    assert!(late.transfer.position.seq > early.transfer.position.seq);

    for _ in 0..4 {
        fx.ledger.settle_history(1_000).await.unwrap();
    }
    let settled = settled_seq(pool).await;
    assert!(
        settled < early.transfer.position.seq,
        "settled through {settled}, past seq {} still being written",
        early.transfer.position.seq
    );

    open.commit().await.unwrap();
    // A mark becomes final once every transaction of the cluster older than it has ended:
    // other tests' transactions (other databases, same cluster) can delay it a little.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while settled_seq(pool).await < late.transfer.position.seq {
        assert!(std::time::Instant::now() < deadline, "never settled");
        fx.ledger.settle_history(1_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checkpoint: Option<i64> = sqlx::query_scalar(
        "SELECT posted FROM blockchain.wallet_checkpoints WHERE wallet_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(alice.id.as_uuid())
    .fetch_optional(pool)
    .await
    .unwrap();
    assert_eq!(
        checkpoint,
        Some(900),
        "the late commit is in alice's checkpoint"
    );
    let statement = fx.ledger.statement(alice.id, None, 10).await.unwrap();
    let kinds: Vec<(TransferKind, i64)> = statement
        .entries
        .iter()
        .map(|e| (e.kind, e.balance_after))
        .collect();
    assert_eq!(
        kinds,
        [
            (TransferKind::Transfer, 900),
            (TransferKind::Transfer, 1_000)
        ]
    );
    let everyone = [alice, bob, carol, dave];
    assert_history_agrees(&fx, &everyone, &[Utc::now()], ledger::pg::CHECKPOINT_EVERY).await;
    fx.assert_invariants().await;
}
