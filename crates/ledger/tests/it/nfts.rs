//! NFTs: mint, move, burn; ownership is never split, even under concurrent moves.

use std::sync::Arc;

use ledger::{Ledger, LedgerError, MintNft, MoveNft, NftId, NftTransferId};
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::Fixture;

fn mint(owner: ledger::UserId) -> MintNft {
    MintNft {
        id: NftId::new(),
        owner,
        collection: "golden-spoons".into(),
        token_uri: Some("ipfs://spoon/1".into()),
        metadata: json!({"rarity": "legendary", "tags": ["spoon"]})
            .as_object()
            .cloned()
            .unwrap(),
    }
}

#[tokio::test]
async fn mint_move_burn_and_the_history_of_it() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.user().await, fx.user().await);
    let request = mint(alice);
    let minted = fx.ledger.mint_nft(request.clone()).await.unwrap();
    assert_eq!(minted.owner, Some(alice));
    assert_eq!(
        fx.ledger.mint_nft(request.clone()).await.unwrap(),
        minted,
        "minting again replays"
    );
    let clash = MintNft {
        collection: "other".into(),
        ..request.clone()
    };
    assert!(matches!(
        fx.ledger.mint_nft(clash).await,
        Err(LedgerError::NftConflict(_))
    ));

    let give = MoveNft {
        id: NftTransferId::new(),
        nft: minted.id,
        from: alice,
        to: Some(bob),
    };
    assert_eq!(
        fx.ledger.move_nft(give.clone()).await.unwrap().owner,
        Some(bob)
    );
    assert_eq!(
        fx.ledger.move_nft(give.clone()).await.unwrap().owner,
        Some(bob),
        "a retried move replays"
    );
    let stale = MoveNft {
        id: NftTransferId::new(),
        ..give.clone()
    };
    assert!(matches!(
        fx.ledger.move_nft(stale).await,
        Err(LedgerError::NftNotOwned { .. })
    ));
    assert!(fx.ledger.nfts_of(alice).await.unwrap().is_empty());
    assert_eq!(fx.ledger.nfts_of(bob).await.unwrap().len(), 1);

    let burn = MoveNft {
        id: NftTransferId::new(),
        nft: minted.id,
        from: bob,
        to: None,
    };
    let burned = fx.ledger.move_nft(burn).await.unwrap();
    assert!(burned.owner.is_none() && burned.burned_at.is_some());
    let after_burn = MoveNft {
        id: NftTransferId::new(),
        nft: minted.id,
        from: bob,
        to: Some(alice),
    };
    assert!(matches!(
        fx.ledger.move_nft(after_burn).await,
        Err(LedgerError::NftBurned(_))
    ));

    let history = fx.ledger.nft_history(minted.id).await.unwrap();
    let hops: Vec<_> = history
        .iter()
        .map(|movement| (movement.from, movement.to))
        .collect();
    assert_eq!(
        hops,
        [
            (None, Some(alice)),
            (Some(alice), Some(bob)),
            (Some(bob), None)
        ]
    );
    assert!(matches!(
        fx.ledger.nft(NftId::new()).await,
        Err(LedgerError::NftNotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_moves_of_one_nft_leave_exactly_one_owner() {
    const CLIENTS: usize = 16;
    let fx = Fixture::new().await;
    let owner = fx.user().await;
    let nft = fx.ledger.mint_nft(mint(owner)).await.unwrap();
    let mut recipients = Vec::new();
    for _ in 0..CLIENTS {
        recipients.push(fx.user().await);
    }
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for recipient in &recipients {
        let (ledger, barrier) = (fx.ledger.clone(), barrier.clone());
        let request = MoveNft {
            id: NftTransferId::new(),
            nft: nft.id,
            from: owner,
            to: Some(*recipient),
        };
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.move_nft(request).await
        }));
    }
    let mut winners = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Ok(moved) => winners.push(moved.owner),
            Err(LedgerError::NftNotOwned { .. }) => {}
            Err(other) => panic!("unexpected failure: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one move took the NFT");
    let current = fx.ledger.nft(nft.id).await.unwrap();
    assert_eq!(current.owner, winners[0]);
    let holders: usize = {
        let mut count = 0;
        for user in recipients.iter().chain([&owner]) {
            count += fx.ledger.nfts_of(*user).await.unwrap().len();
        }
        count
    };
    assert_eq!(holders, 1, "ownership is never split");
    assert_eq!(
        fx.ledger.nft_history(nft.id).await.unwrap().len(),
        2,
        "mint and one move"
    );
}
