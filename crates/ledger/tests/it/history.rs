//! Statements with running balances, and balances at a point in time.

use ledger::{Ledger, TransferKind, TransferRequest};

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_statement_pages_backwards_with_running_balances() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    for amount in [100, 200, 50] {
        fx.ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
    }
    fx.ledger
        .transfer(TransferRequest::transfer(bob.id, alice.id, units(30)))
        .await
        .unwrap();
    let hold = TransferRequest::hold(
        alice.id,
        bob.id,
        units(5),
        std::time::Duration::from_secs(60),
    );
    fx.ledger.transfer(hold).await.unwrap();

    let first = fx.ledger.statement(alice.id, None, 3).await.unwrap();
    let changes: Vec<(TransferKind, i64, i64)> = first
        .entries
        .iter()
        .map(|e| (e.kind, e.posted_change, e.balance_after))
        .collect();
    assert_eq!(
        changes,
        [
            (TransferKind::Pending, 0, 680),
            (TransferKind::Transfer, 30, 680),
            (TransferKind::Transfer, -50, 650)
        ]
    );
    let second = fx
        .ledger
        .statement(alice.id, first.next_before, 3)
        .await
        .unwrap();
    let balances: Vec<i64> = second.entries.iter().map(|e| e.balance_after).collect();
    assert_eq!(
        balances,
        [700, 900, 1_000],
        "older entries, balances continuing from the first page"
    );
    assert_eq!(second.entries[2].amount, 1_000, "the mint credited alice");
    let last = fx
        .ledger
        .statement(alice.id, second.next_before, 3)
        .await
        .unwrap();
    assert!(last.entries.is_empty() && last.next_before.is_none());
}

#[tokio::test]
async fn the_balance_at_a_past_moment() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    fx.ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(100)))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let moment = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    fx.ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(300)))
        .await
        .unwrap();

    assert_eq!(fx.ledger.balance_at(alice.id, moment).await.unwrap(), 900);
    assert_eq!(fx.ledger.balance_at(bob.id, moment).await.unwrap(), 100);
    assert_eq!(
        fx.ledger
            .balance_at(alice.id, chrono::Utc::now())
            .await
            .unwrap(),
        600
    );
    let before_everything = moment - chrono::Duration::days(1);
    assert_eq!(
        fx.ledger
            .balance_at(alice.id, before_everything)
            .await
            .unwrap(),
        0
    );
}
