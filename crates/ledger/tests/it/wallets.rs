//! Wallets: opening, limits edited at run time, closing.

use ledger::{Asset, Ledger, LedgerError, SystemWallet, TransferRequest, WalletOwner};

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_user_wallet_is_opened_once_per_asset() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let first = fx
        .ledger
        .open_user_wallet(user, &Asset::fodi())
        .await
        .unwrap();
    let again = fx
        .ledger
        .open_user_wallet(user, &Asset::fodi())
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.owner, WalletOwner::User(user));
    assert_eq!((first.min_balance, first.shard_count), (Some(0), 1));
    let gems = fx
        .ledger
        .open_user_wallet(user, &Asset::new("GEM").unwrap())
        .await
        .unwrap();
    assert_ne!(gems.id, first.id);
    assert_eq!(fx.ledger.user_wallets(user).await.unwrap().len(), 2);
    let stranger = fx
        .ledger
        .open_user_wallet(ledger::UserId::new(), &Asset::fodi())
        .await
        .unwrap_err();
    assert!(
        matches!(stranger, LedgerError::UserNotFound(_)),
        "{stranger:?}"
    );
}

#[tokio::test]
async fn limits_are_editable_within_the_rules() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(100).await, fx.funded(0).await);
    let raised = fx.ledger.set_min_balance(alice.id, Some(60)).await.unwrap();
    assert_eq!(raised.spendable(), Some(40));
    let refused = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(50)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            LedgerError::InsufficientFunds { available: 40, .. }
        ),
        "{refused:?}"
    );

    assert!(matches!(
        fx.ledger.set_min_balance(alice.id, Some(101)).await,
        Err(LedgerError::LimitAboveBalance { available: 100, .. })
    ));
    assert!(matches!(
        fx.ledger.set_min_balance(alice.id, Some(-1)).await,
        Err(LedgerError::LimitNotAllowed { .. })
    ));
    assert!(matches!(
        fx.ledger.set_min_balance(alice.id, None).await,
        Err(LedgerError::LimitNotAllowed { .. })
    ));
    assert!(matches!(
        fx.ledger.set_min_balance(fx.issuer.id, Some(0)).await,
        Err(LedgerError::LimitNotAllowed { .. })
    ));
    fx.ledger.set_min_balance(alice.id, Some(0)).await.unwrap();
    fx.ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(50)))
        .await
        .unwrap();
    fx.assert_invariants().await;
}

#[tokio::test]
async fn only_an_empty_wallet_closes_and_a_closed_one_takes_nothing() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(10).await, fx.funded(0).await);
    assert!(matches!(
        fx.ledger.close_wallet(alice.id).await,
        Err(LedgerError::WalletNotEmpty {
            posted: 10,
            held: 0,
            ..
        })
    ));
    let closed = fx.ledger.close_wallet(bob.id).await.unwrap();
    assert!(closed.closed_at.is_some());
    let refused = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::WalletClosed(id) if id == bob.id),
        "{refused:?}"
    );
    let pool = fx
        .ledger
        .system_wallet(SystemWallet::Fees, &Asset::fodi())
        .await
        .unwrap();
    assert_eq!(
        (pool.min_balance, pool.shard_count),
        (Some(0), 16),
        "only the issuer is unbounded"
    );
    fx.assert_invariants().await;
}
