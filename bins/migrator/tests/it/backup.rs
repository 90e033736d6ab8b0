//! Backup and restore as docs/operations.md gives them: `pg_dump` of a database holding
//! transfers and sealed blocks, `pg_restore` into a new one, then `migrator check-ledger`.

use std::path::Path;
use std::process::Command;

use db_core::cluster::PgBinaries;
use db_core::sqlx;
use db_core::testing::TestDb;
use ledger::{Amount, Asset, Ledger, LedgerConfig, PgLedger, SystemWallet, TransferRequest};

use crate::cli::{json, run, stderr};

/// Runs one of PostgreSQL's client programs, failing the test with its output.
async fn pg_program(name: &str, args: Vec<String>) {
    let program = PgBinaries::find(None)
        .expect("the PostgreSQL client programs")
        .dir()
        .join(name);
    let output = tokio::task::spawn_blocking(move || Command::new(program).args(args).output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A migrated database with 9 transfers sealed into blocks of at most 3 (so at least blocks
/// 0 to 2; a block holds fewer when the sealer ran while some were not final yet).
async fn ledger_with_blocks() -> TestDb {
    let db = TestDb::new(migrator::all_sets()).await;
    let ledger = PgLedger::new(
        db.db(),
        LedgerConfig {
            block_size: 3,
            ..LedgerConfig::default()
        },
    );
    let issuer = ledger
        .system_wallet(SystemWallet::Issuer, &Asset::fodi())
        .await
        .unwrap();
    let alice = ledger
        .open_user_wallet(db.user().await, &Asset::fodi())
        .await
        .unwrap();
    let bob = ledger
        .open_user_wallet(db.user().await, &Asset::fodi())
        .await
        .unwrap();
    let units = |units| Amount::new(units).unwrap();
    ledger
        .transfer(TransferRequest::transfer(issuer.id, alice.id, units(1_000)))
        .await
        .unwrap();
    for amount in 1..=8 {
        ledger
            .transfer(TransferRequest::transfer(alice.id, bob.id, units(amount)))
            .await
            .unwrap();
    }
    // Final once no older transaction runs anywhere in the cluster: a busy run may need a few
    // rounds.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while ledger
        .seal_status()
        .await
        .unwrap()
        .oldest_unsealed_at
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfers never became final"
        );
        ledger.seal_final_blocks(100).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ledger.shutdown().await;
    db
}

#[tokio::test]
async fn a_restored_database_checks_valid_and_a_changed_transfer_names_its_block() {
    let original = ledger_with_blocks().await;
    let dump_dir = tempfile::tempdir().unwrap();
    let dump = dump_dir.path().join("fodi.dump");
    pg_program(
        "pg_dump",
        vec![
            "--format=custom".into(),
            format!("--file={}", dump.display()),
            original.url(),
        ],
    )
    .await;

    let restored = TestDb::empty().await;
    restore(&dump, &restored.url()).await;
    let checked = run(&restored.url(), &["--json", "check-ledger"]).await;
    assert!(checked.status.success(), "{}", stderr(&checked));
    let report = json(&checked);
    assert_eq!(report["valid"], true);
    assert!(report["chain"]["blocks_checked"].as_i64().unwrap() >= 3);
    assert_eq!(report["chain"]["transfers_checked"], 9);
    assert_eq!(report["invariants"]["transfers"], 9);
    assert_eq!(report["invariants"]["violations"], serde_json::json!([]));

    // One transfer of block 2 edited after the restore (or in the backup): the check names
    // the block and fails.
    let (tx_id, seq): (i64, i64) =
        sqlx::query_as("SELECT last_tx_id, last_seq FROM blockchain.blocks WHERE height = 2")
            .fetch_one(restored.pool())
            .await
            .unwrap();
    sqlx::query(
        "UPDATE blockchain.fodi_transactions SET amount = amount + 1 WHERE tx_id = $1 AND seq = $2",
    )
    .bind(tx_id)
    .bind(seq)
    .execute(restored.pool())
    .await
    .unwrap();
    let tampered = run(&restored.url(), &["--json", "check-ledger"]).await;
    assert_eq!(
        tampered.status.code(),
        Some(i32::from(migrator::EXIT_LEDGER_INVALID)),
        "{}",
        stderr(&tampered)
    );
    let report = json(&tampered);
    assert_eq!(report["valid"], false);
    assert_eq!(report["chain"]["first_invalid"]["height"], 2);
    assert_eq!(
        report["chain"]["first_invalid"]["problem"],
        "merkle_root_mismatch"
    );
    // The edited amount no longer matches the balances either.
    assert_ne!(report["invariants"]["violations"], serde_json::json!([]));

    let text = run(&restored.url(), &["check-ledger"]).await;
    let said = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(said.contains("block 2 does not match"), "{said}");
    assert!(said.contains("NOT valid"), "{said}");
}

/// `pg_restore` as docs/operations.md gives it (the roles exist: one cluster here).
async fn restore(dump: &Path, url: &str) {
    pg_program(
        "pg_restore",
        vec![
            "--exit-on-error".into(),
            "--no-owner".into(),
            format!("--dbname={url}"),
            dump.display().to_string(),
        ],
    )
    .await;
}
