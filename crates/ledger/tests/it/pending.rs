//! Holds (pending transfers): reserve, post wholly or partly, void, expire, resolve once.

use std::time::Duration;

use ledger::{BatchMode, Ledger, LedgerError, TransferKind, TransferRequest};

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_hold_reserves_funds_and_a_partial_post_releases_the_rest() {
    let fx = Fixture::new().await;
    let (shop, customer) = (fx.funded(0).await, fx.funded(1_000).await);
    let hold = TransferRequest::hold(customer.id, shop.id, units(600), Duration::from_secs(60));
    let held = fx.ledger.transfer(hold.clone()).await.unwrap().transfer;
    assert_eq!(held.kind, TransferKind::Pending);
    assert!(held.expires_at.is_some());

    let during = fx.ledger.wallet(customer.id).await.unwrap();
    assert_eq!(
        (during.posted, during.pending_debits, during.available()),
        (1_000, 600, 400)
    );
    let too_much = fx
        .ledger
        .transfer(TransferRequest::transfer(customer.id, shop.id, units(500)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            too_much,
            LedgerError::InsufficientFunds { available: 400, .. }
        ),
        "the hold is not spendable: {too_much:?}"
    );

    let post = fx
        .ledger
        .transfer(TransferRequest::post(hold.id, Some(units(450))))
        .await
        .unwrap()
        .transfer;
    assert_eq!(
        (post.kind, post.amount.units(), post.pending_id),
        (TransferKind::Post, 450, Some(hold.id))
    );
    let after = fx.ledger.wallet(customer.id).await.unwrap();
    assert_eq!((after.posted, after.pending_debits), (550, 0));
    assert_eq!(fx.ledger.wallet(shop.id).await.unwrap().pending_credits, 0);
    assert_eq!(fx.balance(&shop).await, 450);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn posting_more_than_held_or_twice_is_refused() {
    let fx = Fixture::new().await;
    let (shop, customer) = (fx.funded(0).await, fx.funded(100).await);
    let hold = TransferRequest::hold(customer.id, shop.id, units(70), Duration::from_secs(60));
    fx.ledger.transfer(hold.clone()).await.unwrap();

    let excess = fx
        .ledger
        .transfer(TransferRequest::post(hold.id, Some(units(71))))
        .await
        .unwrap_err();
    assert!(
        matches!(
            excess,
            LedgerError::AmountExceedsPending {
                requested: 71,
                held: 70,
                ..
            }
        ),
        "{excess:?}"
    );
    fx.ledger
        .transfer(TransferRequest::post(hold.id, None))
        .await
        .unwrap();
    let again = fx
        .ledger
        .transfer(TransferRequest::void(hold.id))
        .await
        .unwrap_err();
    assert!(
        matches!(again, LedgerError::PendingAlreadyResolved(id) if id == hold.id),
        "{again:?}"
    );
    let unknown = ledger::TransferId::new();
    assert!(matches!(
        fx.ledger.transfer(TransferRequest::post(unknown, None)).await,
        Err(LedgerError::PendingNotFound(id)) if id == unknown
    ));
    assert_eq!(
        (fx.balance(&customer).await, fx.balance(&shop).await),
        (30, 70)
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_void_gives_everything_back() {
    let fx = Fixture::new().await;
    let (shop, customer) = (fx.funded(0).await, fx.funded(100).await);
    let hold = TransferRequest::hold(customer.id, shop.id, units(100), Duration::from_secs(60));
    fx.ledger.transfer(hold.clone()).await.unwrap();
    let void = fx
        .ledger
        .transfer(TransferRequest::void(hold.id))
        .await
        .unwrap()
        .transfer;
    assert_eq!((void.kind, void.amount.units()), (TransferKind::Void, 100));
    let wallet = fx.ledger.wallet(customer.id).await.unwrap();
    assert_eq!((wallet.posted, wallet.pending_debits), (100, 0));
    fx.assert_invariants().await;
}

#[tokio::test]
async fn an_expired_hold_is_released_by_the_sweep_and_can_no_longer_be_posted() {
    let fx = Fixture::new().await;
    let (shop, customer) = (fx.funded(0).await, fx.funded(100).await);
    let hold = TransferRequest::hold(customer.id, shop.id, units(40), Duration::from_millis(200));
    fx.ledger.transfer(hold.clone()).await.unwrap();
    let lasting = TransferRequest::hold(customer.id, shop.id, units(10), Duration::from_secs(600));
    fx.ledger.transfer(lasting.clone()).await.unwrap();

    assert_eq!(
        fx.ledger.expire_holds(100).await.unwrap(),
        0,
        "nothing is due yet"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = fx
        .ledger
        .transfer(TransferRequest::post(hold.id, None))
        .await
        .unwrap_err();
    assert!(
        matches!(late, LedgerError::PendingExpired(id) if id == hold.id),
        "{late:?}"
    );

    assert_eq!(fx.ledger.expire_holds(100).await.unwrap(), 1);
    assert_eq!(
        fx.ledger.expire_holds(100).await.unwrap(),
        0,
        "a hold expires once"
    );
    let wallet = fx.ledger.wallet(customer.id).await.unwrap();
    assert_eq!(
        (wallet.posted, wallet.pending_debits),
        (100, 10),
        "only the lasting hold remains"
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_hold_and_its_post_can_travel_in_one_linked_batch() {
    let fx = Fixture::new().await;
    let (shop, customer) = (fx.funded(0).await, fx.funded(100).await);
    let hold = TransferRequest::hold(customer.id, shop.id, units(80), Duration::from_secs(60));
    let post = TransferRequest::post(hold.id, Some(units(30)));
    let results = fx
        .ledger
        .submit(vec![hold, post], BatchMode::Linked)
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let wallet = fx.ledger.wallet(customer.id).await.unwrap();
    assert_eq!((wallet.posted, wallet.pending_debits), (70, 0));
    fx.assert_invariants().await;
}
