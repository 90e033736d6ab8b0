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
    // 10 transfers (a mint, nine payments) in blocks of at most 4: [4, 4, 2] when every
    // transfer is final at once; a transaction of another test running meanwhile can hold
    // the finality horizon back and leave a block smaller.
    let counts: Vec<i32> = blocks.iter().map(|b| b.transaction_count).collect();
    assert_eq!(counts.iter().sum::<i32>(), 10, "{counts:?}");
    assert!(
        counts.iter().all(|count| (1..=4).contains(count)),
        "{counts:?}"
    );
    assert_eq!(blocks[0].previous_hash, ledger::seal::GENESIS_PREVIOUS_HASH);
    for pair in blocks.windows(2) {
        assert_eq!(pair[1].previous_hash, pair[0].hash);
        assert_eq!(pair[1].height, pair[0].height + 1);
    }
    assert!(
        fx.ledger.seal_next_block().await.unwrap().is_none(),
        "nothing left to seal"
    );

    let verification = fx.ledger.verify_chain().await.unwrap();
    assert!(verification.is_valid(), "{verification:?}");
    assert_eq!(
        (verification.blocks_checked, verification.transfers_checked),
        (blocks.len() as i64, 10)
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
    let audit = ledger::maintenance::audit(&fx.ledger).await.unwrap();
    assert!(audit.verdict().is_ok(), "{audit:?}");
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
    // The periodic audit fails its run on it, naming the block.
    let audit = ledger::maintenance::audit(&fx.ledger).await.unwrap();
    let verdict = audit.verdict().unwrap_err();
    assert!(verdict.contains("broken at block 1"), "{verdict}");

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

/// A change to one field of a block.
type BlockEdit = fn(&mut ledger::Block);

/// A sealed transfer's inclusion proof verifies against its own block's hash, a later block's
/// and an earlier one's; changing any byte of the encoding, the path or a header fails it.
#[tokio::test]
async fn an_inclusion_proof_holds_and_no_byte_of_it_can_change() {
    use ledger::seal::proof::{self, ProofError};

    let fx = fixture_with_blocks_of(5).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    let mut ids = Vec::new();
    for amount in 1..=13 {
        let applied = fx
            .ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
        ids.push(applied.transfer.id);
    }
    let unsealed = fx.ledger.inclusion_proof(ids[0], None).await;
    assert!(
        matches!(unsealed, Err(ledger::LedgerError::NotSealed(_))),
        "{unsealed:?}"
    );
    let blocks = seal_everything(&fx).await;
    assert!(blocks.len() >= 3, "{blocks:?}");
    let (first, last) = (&blocks[0], blocks.last().unwrap());

    // Every transfer against its own block; the 8th also against the last.
    for id in &ids {
        let own = fx.ledger.inclusion_proof(*id, None).await.unwrap().unwrap();
        let block = own
            .blocks
            .iter()
            .find(|b| b.height == own.block_height)
            .unwrap();
        proof::verify(&own, &block.hash).unwrap();
    }
    let middle = ids[7];
    let own = fx
        .ledger
        .inclusion_proof(middle, None)
        .await
        .unwrap()
        .unwrap();
    assert!(first.height < own.block_height && own.block_height < last.height);
    // An earlier block commits to nothing after it: no proof against it is served, and a proof
    // whose blocks were strung on top of it does not verify against it.
    let refused = fx.ledger.inclusion_proof(middle, Some(first.height)).await;
    assert!(
        matches!(
            refused,
            Err(ledger::LedgerError::InvalidField {
                field: "pinned_height",
                ..
            })
        ),
        "{refused:?}"
    );
    // The forgery: a made-up block right after the pinned one, holding the transfer, its
    // hash computed as any verifier would. Every link and hash checks out; only the pinned
    // block's place before the transfer's gives it away.
    let mut made_up = own.blocks[0].clone();
    made_up.height = first.height + 1;
    made_up.previous_hash = first.hash;
    made_up.hash = proof::block_hash(&made_up);
    let forged = ledger::InclusionProof {
        blocks: vec![first.clone(), made_up.clone()],
        block_height: made_up.height,
        ..own.clone()
    };
    assert_eq!(
        proof::verify(&forged, &first.hash),
        Err(ProofError::PinnedHashNotFound)
    );
    assert_eq!(
        proof::verify(&forged, &made_up.hash),
        Ok(()),
        "the made-up block is consistent"
    );
    let own_block = blocks
        .iter()
        .find(|block| block.height == own.block_height)
        .unwrap();
    for pinned in [own_block, last] {
        let proof = fx
            .ledger
            .inclusion_proof(middle, Some(pinned.height))
            .await
            .unwrap()
            .unwrap();
        proof::verify(&proof, &pinned.hash).unwrap();
        // Through JSON, as a client receives it.
        let received: ledger::InclusionProof =
            serde_json::from_value(serde_json::to_value(&proof).unwrap()).unwrap();
        proof::verify(&received, &pinned.hash).unwrap();
    }
    let proof = fx
        .ledger
        .inclusion_proof(middle, Some(last.height))
        .await
        .unwrap()
        .unwrap();
    assert!(proof.blocks.len() >= 2 && !proof.path.is_empty());
    let refuses = |changed: &ledger::InclusionProof, what: &str| {
        assert!(
            proof::verify(changed, &last.hash).is_err(),
            "a changed {what} still verifies"
        );
    };
    for at in 0..proof.leaf_encoding.len() {
        let mut changed = proof.clone();
        changed.leaf_encoding[at] ^= 0x01;
        refuses(&changed, &format!("encoding byte {at}"));
    }
    for step in 0..proof.path.len() {
        for at in 0..32 {
            let mut changed = proof.clone();
            changed.path[step].hash[at] ^= 0x80;
            refuses(&changed, &format!("path step {step} byte {at}"));
        }
        let mut changed = proof.clone();
        changed.path[step].side = match changed.path[step].side {
            proof::Side::Left => proof::Side::Right,
            proof::Side::Right => proof::Side::Left,
        };
        refuses(&changed, &format!("path step {step} side"));
    }
    for index in 0..proof.blocks.len() {
        let edits: [(&str, BlockEdit); 7] = [
            ("height", |b| b.height += 1),
            ("transaction count", |b| b.transaction_count += 1),
            ("last position", |b| b.last_position.seq += 1),
            ("merkle root", |b| b.merkle_root[31] ^= 1),
            ("previous hash", |b| b.previous_hash[0] ^= 1),
            ("hash", |b| b.hash[5] ^= 1),
            ("sealed at", |b| {
                b.sealed_at += chrono::Duration::microseconds(1);
            }),
        ];
        for (field, edit) in edits {
            let mut changed = proof.clone();
            edit(&mut changed.blocks[index]);
            refuses(&changed, &format!("block {index} {field}"));
        }
    }
    let mut other = proof.clone();
    other.transfer_id = ids[0];
    assert_eq!(
        proof::verify(&other, &last.hash),
        Err(ProofError::OtherTransfer(ids[0]))
    );
    assert_eq!(
        proof::verify(&proof, &[7; 32]),
        Err(ProofError::PinnedHashNotFound)
    );
    fx.assert_invariants().await;
}

/// A range of the chain verifies on its own, from the block before it as stored, so that a
/// periodic check need not read the whole history again; tampering inside the range is found,
/// outside it is not this range's to find.
#[tokio::test]
async fn a_range_of_the_chain_verifies_from_where_the_last_check_stopped() {
    let fx = fixture_with_blocks_of(3).await;
    let (alice, bob) = (fx.funded(1_000).await, fx.funded(0).await);
    for amount in 1..=11 {
        fx.ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
    }
    let blocks = seal_everything(&fx).await;
    let last = blocks.last().unwrap().height;
    assert!(last >= 3);
    let all = fx.ledger.verify_blocks(0, None).await.unwrap();
    let tail = fx.ledger.verify_blocks(2, None).await.unwrap();
    let middle = fx.ledger.verify_blocks(1, Some(2)).await.unwrap();
    assert!(all.is_valid() && tail.is_valid() && middle.is_valid());
    assert_eq!(tail.blocks_checked, last - 1);
    assert_eq!(middle.blocks_checked, 2);
    assert!(tail.transfers_checked < all.transfers_checked);
    // A periodic check that finds nothing new: valid; one resuming past the end of the chain
    // (blocks it saw were deleted since): the missing block named.
    let nothing_new = fx.ledger.verify_blocks(last + 1, None).await.unwrap();
    assert!(nothing_new.is_valid() && nothing_new.blocks_checked == 0);
    let gone = fx.ledger.verify_blocks(last + 5, None).await.unwrap();
    assert_eq!(
        gone.first_invalid
            .map(|block| (block.height, block.problem)),
        Some((last + 4, BlockProblem::MissingHeight))
    );
    // An amount of block 0 edited: the whole chain and a range from 0 see it; a range after
    // it trusts block 0's stored hash and checks only its own blocks.
    sqlx::query(
        "UPDATE blockchain.fodi_transactions SET amount = amount + 1
          WHERE (tx_id, seq) = (SELECT tx_id, seq FROM blockchain.fodi_transactions ORDER BY tx_id, seq LIMIT 1)",
    )
    .execute(fx.db.pool())
    .await
    .unwrap();
    assert_eq!(
        fx.ledger
            .verify_blocks(0, Some(0))
            .await
            .unwrap()
            .first_invalid
            .map(|b| b.height),
        Some(0)
    );
    assert!(fx.ledger.verify_blocks(1, None).await.unwrap().is_valid());
    assert_eq!(
        fx.ledger
            .verify_blocks(3, Some(1))
            .await
            .unwrap()
            .blocks_checked,
        0,
        "a range ending before it starts is empty"
    );
    assert!(fx.ledger.verify_blocks(-1, None).await.is_err());
    assert!(fx.ledger.verify_blocks(0, Some(-1)).await.is_err());
}
