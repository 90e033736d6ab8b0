//! Sealed blocks: the chain verifies, and tampering with a sealed transfer is detected.

use db_core::sqlx;
use ledger::{BlockProblem, Ledger, LedgerConfig, TransferRequest};

use crate::support::{Fixture, units};

async fn fixture_with_blocks_of(size: u32) -> Fixture {
    Fixture::with_config(LedgerConfig {
        block_size: size,
        ..LedgerConfig::default()
    })
    .await
}

/// Seals until every committed transfer is in a block. A transfer becomes final (sealable) once
/// no older transaction runs anywhere in the cluster, so under a busy test run this may take a
/// few rounds.
async fn seal_everything(fx: &Fixture) -> Vec<ledger::Block> {
    let count = |sql: &'static str| async move {
        let count: i64 = sqlx::query_scalar(sql)
            .fetch_one(fx.db.pool())
            .await
            .unwrap();
        count
    };
    let committed = count("SELECT count(*) FROM blockchain.fodi_transactions").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut blocks: Vec<ledger::Block> = Vec::new();
    while count("SELECT coalesce(sum(transaction_count), 0)::bigint FROM blockchain.blocks").await
        < committed
    {
        match fx.ledger.seal_next_block().await.unwrap() {
            Some(block) => blocks.push(block),
            None if tokio::time::Instant::now() > deadline => {
                panic!("transfers never became final")
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    blocks
}

#[tokio::test]
async fn sealed_blocks_chain_and_verify() {
    let fx = fixture_with_blocks_of(4).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    for amount in 1..=9 {
        fx.ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
    }
    let blocks = seal_everything(&fx).await;
    // 10 transfers (a mint, nine payments) in blocks of at most 4.
    assert_eq!(
        blocks
            .iter()
            .map(|b| b.transaction_count)
            .collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(blocks[0].previous_hash, ledger::seal::GENESIS_PREVIOUS_HASH);
    assert_eq!(blocks[1].previous_hash, blocks[0].hash);
    assert_eq!(blocks[2].previous_hash, blocks[1].hash);
    assert!(
        fx.ledger.seal_next_block().await.unwrap().is_none(),
        "nothing left to seal"
    );

    let verification = fx.ledger.verify_chain().await.unwrap();
    assert!(verification.is_valid(), "{verification:?}");
    assert_eq!(
        (verification.blocks_checked, verification.transfers_checked),
        (3, 10)
    );
    assert_eq!(fx.ledger.blocks(1, 10).await.unwrap(), blocks[1..].to_vec());
}

#[tokio::test]
async fn tampering_with_a_sealed_transfer_names_its_block() {
    let fx = fixture_with_blocks_of(3).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    let mut victims = Vec::new();
    for amount in 1..=6 {
        let request = TransferRequest::transfer(alice.id, bob.id, units(amount));
        victims.push(request.id);
        fx.ledger.transfer(request).await.unwrap();
    }
    let blocks = seal_everything(&fx).await;
    assert_eq!(blocks.len(), 3);
    // Blocks: [mint, 1, 2], [3, 4, 5], [6]. The third payment opens block 1.
    sqlx::query("UPDATE blockchain.fodi_transactions SET amount = amount + 1 WHERE id = $1")
        .bind(victims[2].as_uuid())
        .execute(fx.db.pool())
        .await
        .unwrap();
    let verification = fx.ledger.verify_chain().await.unwrap();
    let invalid = verification.first_invalid.expect("tampering is detected");
    assert_eq!(
        (invalid.height, invalid.problem),
        (1, BlockProblem::MerkleRootMismatch)
    );

    // Undo it; then delete a transfer of the last block instead.
    sqlx::query("UPDATE blockchain.fodi_transactions SET amount = amount - 1 WHERE id = $1")
        .bind(victims[2].as_uuid())
        .execute(fx.db.pool())
        .await
        .unwrap();
    assert!(fx.ledger.verify_chain().await.unwrap().is_valid());
    sqlx::query("DELETE FROM blockchain.fodi_transactions WHERE id = $1")
        .bind(victims[5].as_uuid())
        .execute(fx.db.pool())
        .await
        .unwrap();
    let invalid = fx
        .ledger
        .verify_chain()
        .await
        .unwrap()
        .first_invalid
        .unwrap();
    assert_eq!(
        (invalid.height, invalid.problem),
        (2, BlockProblem::CountMismatch)
    );
}

#[tokio::test]
async fn tampering_with_a_block_breaks_the_chain() {
    let fx = fixture_with_blocks_of(2).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    for amount in 1..=4 {
        fx.ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
    }
    seal_everything(&fx).await;
    sqlx::query(
        "UPDATE blockchain.blocks SET sealed_at = sealed_at + interval '1 second' WHERE height = 1",
    )
    .execute(fx.db.pool())
    .await
    .unwrap();
    let invalid = fx
        .ledger
        .verify_chain()
        .await
        .unwrap()
        .first_invalid
        .unwrap();
    assert_eq!(
        (invalid.height, invalid.problem),
        (1, BlockProblem::HashMismatch)
    );
}

#[tokio::test]
async fn sealing_waits_for_transactions_in_flight_and_takes_no_lock_transfers_wait_on() {
    let fx = fixture_with_blocks_of(100).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    // A caller's transaction holds a transfer, uncommitted.
    let mut open = fx.db.pool().begin().await.unwrap();
    fx.ledger
        .on(&mut open)
        .transfer(&TransferRequest::transfer(alice.id, bob.id, units(5)))
        .await
        .unwrap();
    // Meanwhile other transfers commit, and the sealer runs.
    let (carol, dave) = (fx.funded(100).await, fx.funded(0).await);
    fx.ledger
        .transfer(TransferRequest::transfer(carol.id, dave.id, units(1)))
        .await
        .unwrap();
    let mut sealed_during = Vec::new();
    while let Some(block) = fx.ledger.seal_next_block().await.unwrap() {
        sealed_during.push(block);
    }
    let covered_during: i32 = sealed_during.iter().map(|b| b.transaction_count).sum();
    // At most alice's mint: nothing at or after the open transaction may be sealed before it
    // ends (less when other transactions of the cluster hold the horizon back too).
    assert!(
        covered_during <= 1,
        "sealed {covered_during} transfers past an open transaction"
    );
    // The sealer did not block the open transaction, which now commits.
    open.commit().await.unwrap();
    let sealed_after = seal_everything(&fx).await;
    let covered: i32 = sealed_after
        .iter()
        .map(|b| b.transaction_count)
        .sum::<i32>()
        + covered_during;
    assert_eq!(covered, 4, "every transfer ends up in exactly one block");
    assert!(fx.ledger.verify_chain().await.unwrap().is_valid());
}
