//! Batches: linked (all or nothing) and independent (a result per item).

use ledger::{Asset, BatchMode, Ledger, LedgerError, SystemWallet, TransferRequest, WalletId};

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_linked_batch_with_one_failure_is_rolled_back_whole() {
    let fx = Fixture::new().await;
    let (alice, bob, carol) = (fx.funded(100).await, fx.funded(0).await, fx.funded(0).await);
    let batch = vec![
        TransferRequest::transfer(alice.id, bob.id, units(60)),
        TransferRequest::transfer(bob.id, carol.id, units(60)),
        TransferRequest::transfer(alice.id, carol.id, units(60)), // only 40 left
    ];
    let results = fx
        .ledger
        .submit(batch.clone(), BatchMode::Linked)
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(LedgerError::LinkedEventFailed)),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(LedgerError::LinkedEventFailed)),
        "{results:?}"
    );
    assert!(
        matches!(
            results[2],
            Err(LedgerError::InsufficientFunds {
                needed: 60,
                available: 40,
                ..
            })
        ),
        "{results:?}"
    );
    assert_eq!(
        (
            fx.balance(&alice).await,
            fx.balance(&bob).await,
            fx.balance(&carol).await
        ),
        (100, 0, 0)
    );
    for request in &batch {
        assert!(
            fx.ledger.get_transfer(request.id).await.unwrap().is_none(),
            "nothing of it was stored"
        );
    }
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_linked_batch_sees_its_own_earlier_items() {
    let fx = Fixture::new().await;
    let (alice, bob, carol) = (fx.funded(100).await, fx.funded(0).await, fx.funded(0).await);
    // Bob can only pay Carol with what Alice pays him earlier in the same batch.
    let batch = vec![
        TransferRequest::transfer(alice.id, bob.id, units(60)),
        TransferRequest::transfer(bob.id, carol.id, units(50)),
    ];
    let results = fx
        .ledger
        .submit(batch.clone(), BatchMode::Linked)
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Positions follow the batch order.
    let positions: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().transfer.position)
        .collect();
    assert!(positions[0] < positions[1]);
    assert_eq!(
        (
            fx.balance(&alice).await,
            fx.balance(&bob).await,
            fx.balance(&carol).await
        ),
        (40, 10, 50)
    );

    let again = fx.ledger.submit(batch, BatchMode::Linked).await.unwrap();
    assert!(
        again
            .iter()
            .all(|r| r.as_ref().is_ok_and(|applied| applied.replayed)),
        "a replayed batch: {again:?}"
    );
    assert_eq!(fx.balance(&carol).await, 50);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn an_independent_batch_applies_what_it_can_in_order() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(100).await, fx.funded(0).await);
    let first = TransferRequest::transfer(alice.id, bob.id, units(10));
    let batch = vec![
        first.clone(),
        first.clone(), // the same again: a replay
        TransferRequest::transfer(alice.id, bob.id, units(11)).with_id(first.id), // its id, other fields
        TransferRequest::transfer(alice.id, bob.id, units(70)),
        TransferRequest::transfer(alice.id, bob.id, units(50)), // 20 left: refused
        TransferRequest::transfer(alice.id, bob.id, units(20)), // fits
        TransferRequest::transfer(alice.id, alice.id, units(1)),
    ];
    let results = fx
        .ledger
        .submit(batch, BatchMode::Independent)
        .await
        .unwrap();
    assert!(
        results[0].as_ref().is_ok_and(|applied| !applied.replayed),
        "{results:?}"
    );
    let replay = results[1].as_ref().unwrap();
    assert!(replay.replayed && replay.transfer == results[0].as_ref().unwrap().transfer);
    assert!(
        matches!(results[2], Err(LedgerError::IdConflict { .. })),
        "{results:?}"
    );
    assert!(results[3].is_ok());
    assert!(
        matches!(
            results[4],
            Err(LedgerError::InsufficientFunds {
                needed: 50,
                available: 20,
                ..
            })
        ),
        "{results:?}"
    );
    assert!(results[5].is_ok());
    assert!(matches!(results[6], Err(LedgerError::SameWallet)));
    assert_eq!((fx.balance(&alice).await, fx.balance(&bob).await), (0, 100));
    fx.assert_invariants().await;
}

#[tokio::test]
async fn batch_size_is_bounded() {
    let fx = Fixture::new().await;
    assert!(matches!(
        fx.ledger.submit(vec![], BatchMode::Linked).await,
        Err(LedgerError::BatchSize { size: 0, .. })
    ));
    let (alice, bob) = (fx.funded(1).await, fx.funded(0).await);
    let too_many =
        vec![TransferRequest::transfer(alice.id, bob.id, units(1)); ledger::pg::MAX_BATCH + 1];
    assert!(matches!(
        fx.ledger.submit(too_many, BatchMode::Independent).await,
        Err(LedgerError::BatchSize { .. })
    ));
}

#[tokio::test]
async fn a_large_linked_batch_applies_in_one_call() {
    let fx = Fixture::new().await;
    let mut wallets = Vec::new();
    for _ in 0..20 {
        wallets.push(fx.funded(1_000_000).await);
    }
    let batch: Vec<TransferRequest> = (0..2_000)
        .map(|i| {
            TransferRequest::transfer(
                wallets[i % 20].id,
                wallets[(i * 7 + 3) % 20].id,
                units(1 + (i as i64 % 50)),
            )
        })
        .filter(|request| match &request.instruction {
            ledger::Instruction::Transfer { debit, credit, .. } => debit != credit,
            _ => true,
        })
        .collect();
    let count = batch.len();
    let results = fx.ledger.submit(batch, BatchMode::Linked).await.unwrap();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), count);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn batches_the_common_path_hands_over_are_decided_item_by_item() {
    // The common path settles a batch whose wallets all exist, are open and hold one asset;
    // any other batch is undone there and decided by the item-by-item path, with the same
    // semantics.
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(100).await, fx.funded(0).await);
    let gems = Asset::new("GEM").unwrap();
    let gem_issuer = fx
        .ledger
        .system_wallet(SystemWallet::Issuer, &gems)
        .await
        .unwrap();
    let carol_gems = fx
        .ledger
        .open_user_wallet(fx.user().await, &gems)
        .await
        .unwrap();

    // Two assets, each item within one: all applied.
    let mixed = vec![
        TransferRequest::transfer(alice.id, bob.id, units(10)),
        TransferRequest::transfer(gem_issuer.id, carol_gems.id, units(5)),
    ];
    let results = fx.ledger.submit(mixed, BatchMode::Linked).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // An unknown wallet among valid items: only its item fails.
    let unknown = WalletId::new();
    let results = fx
        .ledger
        .submit(
            vec![
                TransferRequest::transfer(alice.id, bob.id, units(1)),
                TransferRequest::transfer(alice.id, unknown, units(1)),
                TransferRequest::transfer(bob.id, alice.id, units(3)),
            ],
            BatchMode::Independent,
        )
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(LedgerError::WalletNotFound(wallet)) if wallet == unknown),
        "{results:?}"
    );

    // A closed wallet among valid items: only its item fails.
    let closed = fx.funded(0).await;
    fx.ledger.close_wallet(closed.id).await.unwrap();
    let results = fx
        .ledger
        .submit(
            vec![
                TransferRequest::transfer(alice.id, closed.id, units(1)),
                TransferRequest::transfer(alice.id, bob.id, units(1)),
            ],
            BatchMode::Independent,
        )
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(LedgerError::WalletClosed(wallet)) if wallet == closed.id),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");

    assert_eq!(
        (fx.balance(&alice).await, fx.balance(&bob).await),
        (100 - 10 - 1 + 3 - 1, 10 + 1 - 3 + 1)
    );
    assert_eq!(fx.balance(&carol_gems).await, 5);
    fx.assert_invariants().await;
}
