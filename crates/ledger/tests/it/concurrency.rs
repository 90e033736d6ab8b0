//! Many concurrent clients: no overdraft, no double apply, no deadlock, zero-sum throughout.

use std::sync::Arc;

use db_core::sqlx;
use ledger::{BatchMode, Ledger, LedgerError, TransferRequest};
use tokio::sync::Barrier;

use crate::support::{Fixture, units};

#[tokio::test]
async fn thirty_two_concurrent_spenders_never_overdraw_one_wallet() {
    const SPENDERS: usize = 32;
    let fx = Fixture::new().await;
    let payer = fx.funded(100).await;
    let mut receivers = Vec::new();
    for _ in 0..4 {
        receivers.push(fx.funded(0).await);
    }
    let barrier = Arc::new(Barrier::new(SPENDERS));
    let mut spenders = Vec::new();
    for spender in 0..SPENDERS {
        let (ledger, barrier) = (fx.ledger.clone(), barrier.clone());
        let request = TransferRequest::transfer(payer.id, receivers[spender % 4].id, units(10));
        spenders.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.transfer(request).await
        }));
    }
    let mut applied = 0;
    for spender in spenders {
        match spender.await.unwrap() {
            Ok(_) => applied += 1,
            Err(LedgerError::InsufficientFunds {
                wallet,
                needed: 10,
                available,
            }) => {
                assert_eq!(wallet, payer.id);
                assert!(available < 10, "refused while {available} was available");
            }
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(applied, 10, "exactly what the wallet held was spent");
    assert_eq!(fx.balance(&payer).await, 0);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_transfer_apply_it_once() {
    const CLIENTS: usize = 16;
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    let request = TransferRequest::transfer(alice.id, bob.id, units(250));
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (ledger, barrier, request) = (fx.ledger.clone(), barrier.clone(), request.clone());
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.transfer(request).await
        }));
    }
    let mut fresh = 0;
    for client in clients {
        if !client
            .await
            .unwrap()
            .expect("every retry succeeds")
            .replayed
        {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one client applied it, the others got the replay");
    assert_eq!(
        (fx.balance(&alice).await, fx.balance(&bob).await),
        (750, 250)
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_batches_in_opposite_orders_never_deadlock() {
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 5;
    let fx = Fixture::new().await;
    let mut wallets = Vec::new();
    for _ in 0..8 {
        wallets.push(fx.funded(1_000_000).await);
    }
    let ids: Vec<_> = wallets.iter().map(|wallet| wallet.id).collect();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (ledger, barrier, ids) = (fx.ledger.clone(), barrier.clone(), ids.clone());
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..ROUNDS {
                // A ring through every wallet, forwards for even clients and backwards for odd
                // ones: without one global lock order these would deadlock each other.
                let mut ring: Vec<_> = (0..ids.len())
                    .map(|i| (ids[i], ids[(i + 1) % ids.len()]))
                    .collect();
                if client % 2 == 1 {
                    ring = ring
                        .into_iter()
                        .rev()
                        .map(|(from, to)| (to, from))
                        .collect();
                }
                let batch = ring
                    .into_iter()
                    .map(|(from, to)| TransferRequest::transfer(from, to, units(3)))
                    .collect();
                let mode = if client % 3 == 0 {
                    BatchMode::Independent
                } else {
                    BatchMode::Linked
                };
                let results = ledger
                    .submit(batch, mode)
                    .await
                    .expect("no batch fails as a whole");
                assert!(results.iter().all(Result::is_ok), "{results:?}");
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    for wallet in &wallets {
        assert_eq!(
            fx.balance(wallet).await,
            1_000_000,
            "every ring returns what it took"
        );
    }
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_sharded_system_wallet_pays_many_users_at_once() {
    const CLIENTS: usize = 32;
    let fx = Fixture::new().await;
    let pool = fx.funded_pool(10_000).await;
    assert_eq!(pool.shard_count, 16);
    let mut users = Vec::new();
    for _ in 0..CLIENTS {
        users.push(fx.funded(0).await);
    }
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for user in &users {
        let (ledger, barrier) = (fx.ledger.clone(), barrier.clone());
        let request = TransferRequest::transfer(pool.id, user.id, units(7));
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            for _ in 0..5 {
                ledger
                    .transfer(TransferRequest {
                        id: ledger::TransferId::new(),
                        ..request.clone()
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let pool = fx.ledger.wallet(pool.id).await.unwrap();
    assert_eq!(
        pool.posted,
        10_000 - (CLIENTS as i64) * 35,
        "the pool sums its shards"
    );
    for user in &users {
        assert_eq!(fx.balance(user).await, 35);
    }
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_transfer_can_join_the_callers_own_transaction() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(100).await, fx.funded(0).await);

    let mut transaction = fx.db.pool().begin().await.unwrap();
    fx.ledger
        .on(&mut transaction)
        .transfer(&TransferRequest::transfer(alice.id, bob.id, units(40)))
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    assert_eq!(
        fx.balance(&bob).await,
        0,
        "rolled back with the caller's transaction"
    );

    let mut transaction = fx.db.pool().begin().await.unwrap();
    let order = uuid::Uuid::now_v7();
    db_core::sqlx::query("CREATE TEMP TABLE orders_seen (id uuid)")
        .execute(&mut *transaction)
        .await
        .unwrap();
    db_core::sqlx::query("INSERT INTO orders_seen VALUES ($1)")
        .bind(order)
        .execute(&mut *transaction)
        .await
        .unwrap();
    let request =
        TransferRequest::transfer(alice.id, bob.id, units(40)).with_reference(order.to_string());
    fx.ledger
        .on(&mut transaction)
        .transfer(&request)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        fx.balance(&bob).await,
        40,
        "committed with the caller's transaction"
    );
    fx.assert_invariants().await;
}

/// A batch and single transfers over the same two wallets at once. The balance rows are laid
/// out against wallet order (as updates in place leave them over time), so any statement that
/// locks them in the order it reads them, rather than in wallet order, deadlocks with a single
/// transfer; PostgreSQL counts each deadlock it breaks.
#[tokio::test]
async fn batches_and_single_transfers_take_locks_in_one_order() {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 40;
    let fx = Fixture::new().await;
    let (a, b) = (fx.funded(1_000_000).await, fx.funded(1_000_000).await);
    // Enough other wallets that the planner reads balances by a scan, not a sort.
    for _ in 0..250 {
        fx.funded(0).await;
    }
    sqlx::raw_sql(
        "CREATE INDEX balances_backwards ON blockchain.balances (wallet_id DESC, shard DESC);
         CLUSTER blockchain.balances USING balances_backwards;
         DROP INDEX blockchain.balances_backwards;
         ANALYZE blockchain.balances;",
    )
    .execute(fx.db.pool())
    .await
    .unwrap();
    let deadlocks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(fx.db.pool())
        .await
        .unwrap()
    };
    let before = deadlocks().await;

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (ledger, barrier) = (fx.ledger.clone(), barrier.clone());
        let (a, b) = (a.id, b.id);
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            for round in 0..ROUNDS {
                if client % 2 == 0 {
                    let batch = vec![
                        TransferRequest::transfer(a, b, units(1)),
                        TransferRequest::transfer(b, a, units(1)),
                    ];
                    let results = ledger.submit(batch, BatchMode::Independent).await.unwrap();
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                } else {
                    let (from, to) = if round % 2 == 0 { (a, b) } else { (b, a) };
                    ledger
                        .transfer(TransferRequest::transfer(from, to, units(1)))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    // A backend reports what it counted when it exits at the latest: close the connections
    // the transfers ran on and give their backends a moment to go.
    fx.ledger.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    assert_eq!(
        deadlocks().await,
        before,
        "deadlocks were detected and broken"
    );
    assert_eq!(fx.balance(&a).await, 1_000_000);
    assert_eq!(fx.balance(&b).await, 1_000_000);
    fx.assert_invariants().await;
}
