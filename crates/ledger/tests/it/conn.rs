//! The ledger inside a caller's own transaction (`PgLedger::on`): every operation commits or
//! rolls back with the caller's statements, and what a refusal does to that transaction.

use std::time::Duration;

use db_core::DbError;
use db_core::sqlx::{self, Acquire, PgPool};
use ledger::{
    Asset, BatchMode, Issuance, Ledger, LedgerError, MintNft, NftId, Position, RewardRequest,
    SystemWallet, TransferRequest, UserId,
};

use crate::support::{Fixture, units};

/// Rows of every table of schema `blockchain`, by table: equal before and after a rolled-back
/// transaction when it left nothing behind.
async fn blockchain_rows(pool: &PgPool) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = 'blockchain' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM blockchain.{table}"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        counts.push((table, count));
    }
    counts
}

#[tokio::test]
async fn every_operation_joins_the_callers_transaction_and_a_rollback_leaves_nothing() {
    let fx = Fixture::new().await;
    let alice = fx.funded(1_000).await;
    let (user, other) = (fx.user().await, fx.user().await);
    let other_wallet = fx
        .ledger
        .open_user_wallet(other, &Asset::fodi())
        .await
        .unwrap();
    // A hold that lapses before the transaction starts, for expire_holds to find.
    let hold = TransferRequest::hold(
        alice.id,
        other_wallet.id,
        units(7),
        Duration::from_millis(1),
    );
    fx.ledger.transfer(hold.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = blockchain_rows(fx.db.pool()).await;

    let mut transaction = fx.db.pool().begin().await.unwrap();
    let mut conn = fx.ledger.on(&mut transaction);

    let wallet = conn.open_user_wallet(user, &Asset::fodi()).await.unwrap();
    let wallets = conn.user_wallets(user).await.unwrap();
    assert_eq!(wallets, std::slice::from_ref(&wallet));

    let paid = conn
        .transfer(&TransferRequest::transfer(alice.id, wallet.id, units(40)))
        .await
        .unwrap();
    let seen = conn.get_transfer(paid.transfer.id).await.unwrap();
    assert_eq!(
        seen,
        Some(paid.transfer.clone()),
        "its own transfer is visible"
    );
    let statement = conn.statement(wallet.id, None, 10).await.unwrap();
    assert_eq!(statement.entries.len(), 1);
    assert_eq!(statement.entries[0].balance_after, 40);
    let later = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(conn.balance_at(wallet.id, later).await.unwrap(), 40);

    let bounded = conn.set_min_balance(wallet.id, Some(15)).await.unwrap();
    assert_eq!(bounded.min_balance, Some(15));
    let closed = conn.close_wallet(other_wallet.id).await;
    assert!(
        matches!(closed, Err(LedgerError::WalletNotEmpty { held: 7, .. })),
        "the hold still counts: {closed:?}"
    );
    assert_eq!(conn.expire_holds(10).await.unwrap(), 1);
    let closed = conn.close_wallet(other_wallet.id).await.unwrap();
    assert!(closed.closed_at.is_some());

    let pool = conn
        .system_wallet(SystemWallet::RewardsPool, &Asset::fodi())
        .await
        .unwrap();
    let issued = conn
        .issue(&Issuance::new(pool.id, units(50)))
        .await
        .unwrap();
    assert_eq!(
        issued.transfer.reason.as_deref(),
        Some(ledger::ISSUANCE_REASON)
    );
    let reward = conn
        .pay_reward(&RewardRequest {
            user,
            reason: "first_order".into(),
            reference: "order:1".into(),
            amount: units(5),
            asset: Asset::fodi(),
            order_id: None,
            submitted_by: None,
        })
        .await
        .unwrap();
    assert_eq!(conn.rewards_of(user, 10).await.unwrap(), [reward]);

    let minted = conn
        .mint_nft(&MintNft {
            id: NftId::new(),
            owner: user,
            collection: "golden-spoons".into(),
            token_uri: None,
            metadata: serde_json::Map::new(),
        })
        .await
        .unwrap();
    assert_eq!(conn.nft(minted.id).await.unwrap(), minted);
    assert_eq!(
        conn.nfts_of(user).await.unwrap(),
        std::slice::from_ref(&minted)
    );
    assert_eq!(conn.nft_history(minted.id).await.unwrap().len(), 1);

    // This transaction's own transfers are not final while it runs. (Whether the fixture's
    // committed ones are yet depends on the oldest transaction of the whole shared cluster,
    // so the page may be empty: see feed.rs for finality under concurrent writers.)
    let head = conn.feed_head().await.unwrap();
    let page = conn.changes_after(Position::START, 100).await.unwrap();
    assert!(
        page.transfers
            .iter()
            .all(|transfer| transfer.id != paid.transfer.id)
    );
    conn.save_feed_cursor("conn-test", head).await.unwrap();
    assert_eq!(conn.feed_cursor("conn-test").await.unwrap(), head);
    assert!(conn.blocks(0, 10).await.unwrap().is_empty());

    transaction.rollback().await.unwrap();

    assert_eq!(blockchain_rows(fx.db.pool()).await, before);
    assert_eq!(fx.balance(&alice).await, 1_000);
    assert!(fx.ledger.user_wallets(user).await.unwrap().is_empty());
    assert!(
        fx.ledger
            .wallet(other_wallet.id)
            .await
            .unwrap()
            .closed_at
            .is_none()
    );
    assert_eq!(
        fx.ledger
            .wallet(other_wallet.id)
            .await
            .unwrap()
            .pending_credits,
        7,
        "the expiry rolled back: the hold is open again"
    );
    assert_eq!(
        fx.ledger.feed_cursor("conn-test").await.unwrap(),
        Position::START
    );
    fx.assert_invariants().await;
}

#[tokio::test]
async fn a_refused_transfer_leaves_the_callers_transaction_usable() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.funded(10).await, fx.funded(0).await);
    sqlx::query("CREATE TABLE order_log (id uuid PRIMARY KEY)")
        .execute(fx.db.pool())
        .await
        .unwrap();

    let mut transaction = fx.db.pool().begin().await.unwrap();
    let refused = fx
        .ledger
        .on(&mut transaction)
        .transfer(&TransferRequest::transfer(alice.id, bob.id, units(50)))
        .await;
    assert!(
        matches!(
            refused,
            Err(LedgerError::InsufficientFunds {
                needed: 50,
                available: 10,
                ..
            })
        ),
        "{refused:?}"
    );
    // A linked batch refused as a whole is an answer too, not an error of the statement.
    let batch = fx
        .ledger
        .on(&mut transaction)
        .submit(
            &[
                TransferRequest::transfer(alice.id, bob.id, units(5)),
                TransferRequest::transfer(alice.id, bob.id, units(500)),
            ],
            BatchMode::Linked,
        )
        .await
        .unwrap();
    assert!(matches!(batch[0], Err(LedgerError::LinkedEventFailed)));
    assert!(matches!(
        batch[1],
        Err(LedgerError::InsufficientFunds { .. })
    ));

    // The transaction goes on: the caller's own statement and another transfer both work.
    let order = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO order_log (id) VALUES ($1)")
        .bind(order)
        .execute(&mut *transaction)
        .await
        .expect("the refusal did not abort the transaction");
    fx.ledger
        .on(&mut transaction)
        .transfer(&TransferRequest::transfer(alice.id, bob.id, units(4)))
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    assert_eq!(fx.balance(&bob).await, 4);
    assert_eq!(fx.balance(&alice).await, 6);
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM order_log")
        .fetch_one(fx.db.pool())
        .await
        .unwrap();
    assert_eq!(logged, 1);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn an_error_the_database_raised_aborts_the_callers_transaction() {
    let fx = Fixture::new().await;
    let nobody = UserId(uuid::Uuid::now_v7());

    let mut transaction = fx.db.pool().begin().await.unwrap();
    let refused = fx
        .ledger
        .on(&mut transaction)
        .open_user_wallet(nobody, &Asset::fodi())
        .await;
    assert!(
        matches!(refused, Err(LedgerError::UserNotFound(user)) if user == nobody),
        "{refused:?}"
    );
    let next = sqlx::query("SELECT 1")
        .execute(&mut *transaction)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert_eq!(
        next.sqlstate().as_deref(),
        Some("25P02"),
        "the foreign key's error aborted the transaction: {next:?}"
    );
    transaction.rollback().await.unwrap();

    // A savepoint (a nested sqlx transaction) keeps such an error from spoiling the outer one.
    let mut transaction = fx.db.pool().begin().await.unwrap();
    let mut savepoint = transaction.begin().await.unwrap();
    let refused = fx
        .ledger
        .on(&mut savepoint)
        .open_user_wallet(nobody, &Asset::fodi())
        .await;
    assert!(matches!(refused, Err(LedgerError::UserNotFound(_))));
    savepoint.rollback().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *transaction)
        .await
        .expect("rolling back to the savepoint recovered the transaction");
    assert_eq!(one, 1);
    transaction.commit().await.unwrap();
}
