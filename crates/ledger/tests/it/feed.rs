//! The change feed: every committed transfer, once, in order, even while writers race.
//!
//! A transfer reaches the feed once no older transaction still runs anywhere in the cluster;
//! under a busy test run that can take a moment, so consumers here poll with a deadline.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledger::{Ledger, Position, TransferId, TransferRequest};

use crate::support::{Fixture, units};

#[tokio::test]
async fn a_consumer_sees_every_transfer_once_in_order_while_writers_race() {
    const WRITERS: usize = 8;
    const TRANSFERS_EACH: usize = 25;
    let fx = Fixture::new().await;
    let mut wallets = Vec::new();
    for _ in 0..WRITERS {
        wallets.push((fx.funded(1_000).await, fx.funded(0).await));
    }
    let mut written: Vec<TransferId> = Vec::new();
    let mut batches = Vec::new();
    for (from, to) in &wallets {
        let requests: Vec<_> = (0..TRANSFERS_EACH)
            .map(|_| TransferRequest::transfer(from.id, to.id, units(1)))
            .collect();
        written.extend(requests.iter().map(|request| request.id));
        batches.push(requests);
    }
    let expected: HashSet<TransferId> = written.iter().copied().collect();

    let done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (ledger, done, expected) = (fx.ledger.clone(), done.clone(), expected.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut position = Position::START;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let page = ledger.changes_after(position, 7).await.unwrap();
                for transfer in &page.transfers {
                    assert!(transfer.position > position, "positions only grow");
                    position = transfer.position;
                    seen.push(transfer.id);
                }
                let delivered = seen.iter().filter(|id| expected.contains(id)).count();
                let complete = done.load(Ordering::SeqCst) && delivered >= expected.len();
                if complete || tokio::time::Instant::now() > deadline {
                    // One more page: anything past this point would be a duplicate.
                    let extra = ledger.changes_after(position, 7).await.unwrap();
                    seen.extend(extra.transfers.iter().map(|transfer| transfer.id));
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for requests in batches {
        let ledger = fx.ledger.clone();
        writers.push(tokio::spawn(async move {
            for request in requests {
                ledger.transfer(request).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = consumer.await.unwrap();

    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "nothing twice");
    assert!(
        expected.iter().all(|id| distinct.contains(id)),
        "nothing missed"
    );
    // Each writer's transfers arrive in the order it made them.
    for writer in written.chunks(TRANSFERS_EACH) {
        let order: Vec<_> = seen.iter().filter(|id| writer.contains(id)).collect();
        assert_eq!(order, writer.iter().collect::<Vec<_>>());
    }
    fx.assert_invariants().await;
}

#[tokio::test]
async fn consumers_keep_their_position() {
    let fx = Fixture::new().await;
    assert_eq!(
        fx.ledger.feed_cursor("websocket").await.unwrap(),
        Position::START
    );
    let (alice, bob) = (fx.funded(10).await, fx.funded(0).await);
    fx.ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(1)))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let page = loop {
        let page = fx.ledger.changes_after(Position::START, 100).await.unwrap();
        if page.transfers.len() >= 2 || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(page.transfers.len(), 2, "the mint and the transfer");
    fx.ledger
        .save_feed_cursor("websocket", page.next)
        .await
        .unwrap();
    let resumed = fx.ledger.feed_cursor("websocket").await.unwrap();
    assert_eq!(resumed, page.next);
    assert!(
        fx.ledger
            .changes_after(resumed, 100)
            .await
            .unwrap()
            .transfers
            .is_empty()
    );
}

#[tokio::test]
async fn following_from_the_head_delivers_only_what_commits_afterwards() {
    let fx = Fixture::new().await;
    assert_eq!(fx.ledger.feed_head().await.unwrap(), Position::START);
    let (alice, bob) = (fx.funded(10).await, fx.funded(0).await);
    let first = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(1)))
        .await
        .unwrap();
    // Finality waits for every older transaction of the cluster (other tests' too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let head = loop {
        let head = fx.ledger.feed_head().await.unwrap();
        if head == first.transfer.position || tokio::time::Instant::now() > deadline {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(head, first.transfer.position, "the newest final transfer");
    let later = fx
        .ledger
        .transfer(TransferRequest::transfer(alice.id, bob.id, units(2)))
        .await
        .unwrap();
    let page = loop {
        let page = fx.ledger.changes_after(head, 100).await.unwrap();
        if !page.transfers.is_empty() || tokio::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        page.transfers.iter().map(|t| t.id).collect::<Vec<_>>(),
        [later.transfer.id]
    );
}
