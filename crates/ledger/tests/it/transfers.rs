//! Single transfers: application, idempotent retries, conflicts, refusals with their facts.

use ledger::{Amount, BatchMode, Ledger, LedgerError, TransferKind, TransferRequest, WalletId};
use serde_json::json;

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_transfer_moves_funds_and_a_retry_replays_it() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    let metadata = json!({"order": "A-17", "items": 3})
        .as_object()
        .cloned()
        .unwrap();
    let request = TransferRequest::transfer(alice.id, bob.id, units(300))
        .with_reason("purchase")
        .with_reference("order:A-17")
        .with_metadata(metadata);

    let first = fx.ledger.transfer(request.clone()).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.transfer.kind, TransferKind::Transfer);
    assert_eq!(first.transfer.amount.units(), 300);
    assert_eq!(first.transfer.reason.as_deref(), Some("purchase"));

    // The client lost the answer and retries: the original comes back, nothing moves again.
    let retry = fx.ledger.transfer(request.clone()).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.transfer, first.transfer);
    assert_eq!(
        (fx.balance(&alice).await, fx.balance(&bob).await),
        (700, 300)
    );
    assert_eq!(
        fx.ledger.get_transfer(request.id).await.unwrap().unwrap(),
        first.transfer
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn the_same_id_with_other_fields_is_a_conflict() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    let original = TransferRequest::transfer(alice.id, bob.id, units(100));
    fx.ledger.transfer(original.clone()).await.unwrap();

    let other_amount = TransferRequest::transfer(alice.id, bob.id, units(101)).with_id(original.id);
    let error = fx.ledger.transfer(other_amount).await.unwrap_err();
    assert!(
        matches!(error, LedgerError::IdConflict { id } if id == original.id),
        "{error:?}"
    );
    let other_reason = original.clone().with_reason("refund");
    assert!(matches!(
        fx.ledger.transfer(other_reason).await,
        Err(LedgerError::IdConflict { .. })
    ));
    assert_eq!(fx.balance(&alice).await, 900);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn refusals_carry_their_facts_and_change_nothing() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(50).await, fx.funded(0).await);

    let overdraft = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(80)))
        .await
        .unwrap_err();
    match overdraft {
        LedgerError::InsufficientFunds {
            wallet,
            needed,
            available,
        } => {
            assert_eq!((wallet, needed, available), (alice.id, 80, 50));
        }
        other => panic!("expected insufficient funds, got {other:?}"),
    }
    let ghost = WalletId::new();
    assert!(matches!(
        fx.ledger.transfer(TransferRequest::transfer(alice.id, ghost, units(1))).await,
        Err(LedgerError::WalletNotFound(id)) if id == ghost
    ));
    assert!(matches!(
        fx.ledger
            .transfer(TransferRequest::transfer(alice.id, alice.id, units(1)))
            .await,
        Err(LedgerError::SameWallet)
    ));
    let long_reason =
        TransferRequest::transfer(alice.id, bob.id, units(1)).with_reason("x".repeat(65));
    assert!(matches!(
        fx.ledger.transfer(long_reason).await,
        Err(LedgerError::InvalidField {
            field: "reason",
            ..
        })
    ));
    assert_eq!((fx.balance(&alice).await, fx.balance(&bob).await), (50, 0));
    fx.assert_invariants().await;
}

#[tokio::test]
async fn wallets_of_different_assets_cannot_trade() {
    let fx = Fixture::new().await;
    let alice = fx.funded(10).await;
    let gems = ledger::Asset::new("GEM").unwrap();
    let bob_gems = fx
        .ledger
        .open_user_wallet(fx.user().await, &gems)
        .await
        .unwrap();
    let error = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob_gems.id, units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LedgerError::AssetMismatch { .. }),
        "{error:?}"
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn balances_never_wrap_around() {
    let fx = Fixture::new().await;
    let full = fx.funded(i64::MAX).await;
    let one_more = fx
        .ledger
        .transfer(TransferRequest::transfer(fx.issuer.id, full.id, units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(one_more, LedgerError::Overflow { wallet } if wallet == full.id),
        "{one_more:?}"
    );
    assert_eq!(fx.balance(&full).await, i64::MAX);
    assert!(
        Amount::tokens(i64::MAX).is_err(),
        "overflowing amounts cannot even be built"
    );
    fx.assert_invariants().await;
}

/// The single-transfer path and the batch engine must agree on every outcome.
#[tokio::test]
async fn the_single_path_and_the_batch_engine_agree() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(100).await, fx.funded(0).await);
    let closed = fx.funded(0).await;
    fx.ledger.close_wallet(closed.id).await.unwrap();
    let gems = fx
        .ledger
        .open_user_wallet(fx.user().await, &ledger::Asset::new("GEM").unwrap())
        .await
        .unwrap();
    let taken = TransferRequest::transfer(alice.id, bob.id, units(1));
    fx.ledger.transfer(taken.clone()).await.unwrap();

    let cases = [
        TransferRequest::transfer(alice.id, bob.id, units(1_000)),
        TransferRequest::transfer(alice.id, WalletId::new(), units(1)),
        TransferRequest::transfer(alice.id, alice.id, units(1)),
        TransferRequest::transfer(alice.id, closed.id, units(1)),
        TransferRequest::transfer(closed.id, alice.id, units(1)),
        TransferRequest::transfer(closed.id, WalletId::new(), units(1)),
        TransferRequest::transfer(alice.id, gems.id, units(1)),
        TransferRequest::transfer(alice.id, bob.id, units(2)).with_id(taken.id),
        taken.clone(),
    ];
    for case in cases {
        let single = fx.ledger.transfer(case.clone()).await;
        // A batch of one immediate transfer takes the single path too: a second item, failing
        // on its own, sends the case through the batch engine.
        let unrelated = TransferRequest::transfer(WalletId::new(), WalletId::new(), units(1));
        let batched = fx
            .ledger
            .submit(vec![case.clone(), unrelated], BatchMode::Independent)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            format!("{single:?}"),
            format!("{batched:?}"),
            "outcomes differ for {case:?}"
        );
    }
    fx.assert_invariants().await;
}
