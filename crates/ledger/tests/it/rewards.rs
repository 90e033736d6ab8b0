//! Rewards from the pool: at most once per (user, reason, reference), even under races.

use std::sync::Arc;

use ledger::{Amount, Asset, Ledger, LedgerError, RewardRequest};
use tokio::sync::Barrier;

use crate::support::{Fixture, units};

fn reward(user: ledger::UserId, amount: Amount) -> RewardRequest {
    RewardRequest {
        user,
        reason: "first_order".into(),
        reference: "order:42".into(),
        amount,
        asset: Asset::fodi(),
        order_id: None,
        submitted_by: None,
    }
}

#[tokio::test]
async fn concurrent_duplicate_rewards_pay_once() {
    const CLIENTS: usize = 16;
    let fx = Fixture::new().await;
    fx.funded_pool(10_000).await;
    let user = fx.user().await;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (ledger, barrier) = (fx.ledger.clone(), barrier.clone());
        let request = reward(user, units(500));
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.pay_reward(request).await
        }));
    }
    let mut paid = 0;
    for client in clients {
        if !client
            .await
            .unwrap()
            .expect("every duplicate succeeds")
            .replayed
        {
            paid += 1;
        }
    }
    assert_eq!(paid, 1);
    let wallet = fx
        .ledger
        .open_user_wallet(user, &Asset::fodi())
        .await
        .unwrap();
    assert_eq!(wallet.posted, 500);
    assert_eq!(fx.ledger.rewards_of(user, 10).await.unwrap().len(), 1);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn the_same_reward_with_other_terms_is_a_conflict_and_another_reference_pays_again() {
    let fx = Fixture::new().await;
    fx.funded_pool(10_000).await;
    let user = fx.user().await;
    fx.ledger
        .pay_reward(reward(user, units(500)))
        .await
        .unwrap();
    let other_amount = fx
        .ledger
        .pay_reward(reward(user, units(900)))
        .await
        .unwrap_err();
    assert!(
        matches!(other_amount, LedgerError::RewardConflict { .. }),
        "{other_amount:?}"
    );
    let next_order = RewardRequest {
        reference: "order:43".into(),
        ..reward(user, units(500))
    };
    assert!(!fx.ledger.pay_reward(next_order).await.unwrap().replayed);
    let wallet = fx
        .ledger
        .open_user_wallet(user, &Asset::fodi())
        .await
        .unwrap();
    assert_eq!(wallet.posted, 1_000);
    let unknown_user = fx
        .ledger
        .pay_reward(reward(ledger::UserId::new(), units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown_user, LedgerError::UserNotFound(_)),
        "{unknown_user:?}"
    );
    fx.assert_invariants().await;
}
