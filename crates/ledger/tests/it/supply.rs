//! Money supply: only issuance creates money; the rewards pool and the fees wallet are bounded
//! like user wallets, shard by shard, and spend exactly what was issued to them.

use std::sync::Arc;

use db_core::sqlx;
use ledger::{
    Asset, Issuance, Ledger, LedgerConfig, LedgerError, RewardRequest, SystemWallet,
    TransferRequest,
};
use tokio::sync::Barrier;

use crate::support::{Fixture, units};

fn reward(user: ledger::UserId, reference: String, amount: i64) -> RewardRequest {
    RewardRequest {
        user,
        reason: "order".into(),
        reference,
        amount: units(amount),
        asset: Asset::fodi(),
        order_id: None,
        submitted_by: None,
    }
}

#[tokio::test]
async fn an_unfunded_pool_pays_nothing_and_pays_all_it_was_issued() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let refused = fx
        .ledger
        .pay_reward(reward(user, "order:1".into(), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::InsufficientFunds { available: 0, .. }),
        "{refused:?}"
    );
    // 100 units spread over 16 shards: no shard alone holds them, the wallet does.
    let pool = fx.funded_pool(100).await;
    assert_eq!((pool.posted, pool.shard_count), (100, 16));
    let paid = fx
        .ledger
        .pay_reward(reward(user, "order:1".into(), 100))
        .await
        .unwrap();
    assert_eq!(paid.amount, units(100));
    let refused = fx
        .ledger
        .pay_reward(reward(user, "order:2".into(), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::InsufficientFunds { .. }),
        "{refused:?}"
    );
    assert_eq!(fx.ledger.wallet(pool.id).await.unwrap().posted, 0);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn concurrent_rewards_spend_the_pool_exactly_and_never_below_zero() {
    const CLIENTS: usize = 40;
    let fx = Fixture::new().await;
    let pool = fx.funded_pool(1_000).await;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (ledger, barrier, user) = (fx.ledger.clone(), barrier.clone(), fx.user().await);
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            // ShardsBusy: the pool holds enough, but in shards other rewards hold; the ledger
            // retried already, and says the caller may retry. Never a wrong refusal.
            loop {
                match ledger
                    .pay_reward(reward(user, format!("order:{client}"), 30))
                    .await
                {
                    Err(LedgerError::ShardsBusy(_)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    answer => return answer,
                }
            }
        }));
    }
    let (mut paid, mut refused) = (0, 0);
    for client in clients {
        match client.await.unwrap() {
            Ok(_) => paid += 1,
            Err(LedgerError::InsufficientFunds { .. }) => refused += 1,
            Err(other) => panic!("unexpected answer: {other:?}"),
        }
    }
    // 33 rewards of 30 fit in 1,000; a refusal means the pool as a whole was short.
    assert_eq!((paid, refused), (33, 7));
    assert_eq!(fx.ledger.wallet(pool.id).await.unwrap().posted, 10);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn only_issuance_creates_money_and_the_fees_wallet_is_bounded_too() {
    let fx = Fixture::new().await;
    let alice = fx.funded(10).await;
    let fees = fx
        .ledger
        .system_wallet(SystemWallet::Fees, &Asset::fodi())
        .await
        .unwrap();
    let refused = fx
        .ledger
        .transfer(TransferRequest::transfer(fees.id, alice.id, units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::InsufficientFunds { .. }),
        "{refused:?}"
    );
    fx.ledger
        .transfer(TransferRequest::transfer(alice.id, fees.id, units(4)))
        .await
        .unwrap();
    fx.ledger
        .transfer(TransferRequest::transfer(fees.id, alice.id, units(4)))
        .await
        .unwrap();
    for (wallet, bound) in [(fees.id, None), (fees.id, Some(-5))] {
        let refused = fx.ledger.set_min_balance(wallet, bound).await.unwrap_err();
        assert!(
            matches!(refused, LedgerError::LimitNotAllowed { .. }),
            "{refused:?}"
        );
    }
    let to_itself = fx
        .ledger
        .issue(Issuance::new(fx.issuer.id, units(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(to_itself, LedgerError::InvalidField { field: "to", .. }),
        "{to_itself:?}"
    );
    let report = fx.ledger.check_invariants().await.unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
    assert_eq!(fx.ledger.wallet(fx.issuer.id).await.unwrap().posted, -10);
}

#[tokio::test]
async fn issuance_replays_by_id_and_records_its_submitter() {
    let fx = Fixture::new().await;
    let alice = fx.funded(0).await;
    let issuance = Issuance::new(alice.id, units(25))
        .with_reference("grant:7")
        .submitted_by("treasury-desk");
    let first = fx.ledger.issue(issuance.clone()).await.unwrap();
    let again = fx.ledger.issue(issuance.clone()).await.unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(
        again.transfer.submitted_by.as_deref(),
        Some("treasury-desk")
    );
    let stored = fx
        .ledger
        .get_transfer(first.transfer.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.submitted_by.as_deref(), Some("treasury-desk"));
    assert_eq!(stored.reason.as_deref(), Some(ledger::ISSUANCE_REASON));
    assert_eq!(fx.balance(&alice).await, 25);
    fx.assert_invariants().await;
}

#[tokio::test]
async fn only_configured_assets_exist() {
    let fx = Fixture::with_config(LedgerConfig::default()).await;
    let user = fx.user().await;
    let gems = Asset::new("GEM").unwrap();
    let refused = fx.ledger.open_user_wallet(user, &gems).await.unwrap_err();
    assert!(
        matches!(&refused, LedgerError::UnknownAsset { code, .. } if code == "GEM"),
        "{refused:?}"
    );
    let refused = fx
        .ledger
        .pay_reward(RewardRequest {
            asset: gems.clone(),
            ..reward(user, "order:1".into(), 1)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::UnknownAsset { .. }),
        "{refused:?}"
    );
    let refused = fx
        .ledger
        .system_wallet(SystemWallet::RewardsPool, &gems)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::UnknownAsset { .. }),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_invariants_name_money_made_outside_issuance() {
    let fx = Fixture::new().await;
    let pool = fx.funded_pool(50).await;
    // What a bug, or a hand with direct access to the tables, could do.
    db_core::sqlx::query(
        "UPDATE blockchain.balances SET posted = posted + 7, min_balance = NULL
          WHERE wallet_id = $1 AND shard = 3",
    )
    .bind(pool.id.as_uuid())
    .execute(fx.db.pool())
    .await
    .unwrap();
    let report = fx.ledger.check_invariants().await.unwrap();
    let kinds: Vec<String> = report
        .violations
        .iter()
        .map(|violation| serde_json::to_value(violation).unwrap()["kind"].to_string())
        .collect();
    for expected in [
        "asset_not_balanced",
        "supply_not_issued",
        "system_wallet_unbounded",
    ] {
        assert!(
            kinds.iter().any(|kind| kind.contains(expected)),
            "{expected} missing from {kinds:?}"
        );
    }
}

/// A deployment whose rewards pool paid on credit before V4: the migration covers each shard's
/// deficit from the issuer, recorded as issuance, then bounds the pool; nothing is lost and
/// the invariants hold after it.
#[tokio::test]
async fn the_upgrade_covers_a_pool_that_went_below_zero() {
    use db_core::migrate::{Migrator, UpOptions};
    use db_core::testing::TestDb;

    let db = TestDb::empty().await;
    let mut connection = db.pool().acquire().await.unwrap();
    let up = |sets, target| {
        let migrator = Migrator::new(sets).unwrap();
        async move {
            (
                migrator,
                UpOptions {
                    dry_run: false,
                    target,
                },
            )
        }
    };
    let (migrator, options) = up(vec![db_core::migrate::core_set()], None).await;
    migrator.up(&mut connection, options).await.unwrap();
    let (migrator, options) = up(vec![ledger::migration_set()], Some(3)).await;
    migrator.up(&mut connection, options).await.unwrap();
    let user = db.user().await;
    // The V3 engine, as it ran: an unbounded pool of 4 shards paying 700 and 300.
    let (pool, wallet) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for statement in [
        "INSERT INTO blockchain.wallets (id, asset, kind, shard_count) VALUES ($1, 'FODI', 'rewards_pool', 4)",
        "INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count) SELECT $1, s, 'FODI', 4 FROM generate_series(0, 3) s",
    ] {
        sqlx::query(statement)
            .bind(pool)
            .execute(&mut *connection)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO blockchain.wallets (id, user_id, asset, kind) VALUES ($1, $2, 'FODI', 'user')",
    )
    .bind(wallet)
    .bind(user.as_uuid())
    .execute(&mut *connection)
    .await
    .unwrap();
    sqlx::query("INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count, min_balance) VALUES ($1, 0, 'FODI', 1, 0)")
        .bind(wallet)
        .execute(&mut *connection)
        .await
        .unwrap();
    for amount in [700_i64, 300] {
        let status: String = sqlx::query_scalar(
            "SELECT status FROM blockchain.submit_transfer($1, $2, $3, $4, 'reward', NULL, NULL)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(pool)
        .bind(wallet)
        .bind(amount)
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        assert_eq!(status, "ok");
    }

    let (migrator, options) = up(vec![ledger::migration_set()], None).await;
    migrator.up(&mut connection, options).await.unwrap();
    drop(connection);
    let ledger = ledger::PgLedger::new(db.db(), LedgerConfig::default());
    let report = ledger.check_invariants().await.unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
    let pool = ledger.wallet(ledger::WalletId(pool)).await.unwrap();
    assert_eq!((pool.posted, pool.min_balance), (0, Some(0)));
    assert_eq!(
        ledger
            .wallet(ledger::WalletId(wallet))
            .await
            .unwrap()
            .posted,
        1_000
    );
    let issued: i64 = sqlx::query_scalar(
        "SELECT sum(amount)::bigint FROM blockchain.fodi_transactions WHERE reason = 'issuance'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(issued, 1_000, "the deficit, covered and recorded");
}

/// After a transfer its shard could not pay, the pool's funds are spread again, not left on
/// one shard for every later transfer to gather anew.
#[tokio::test]
async fn a_gather_leaves_the_rest_spread() {
    let fx = Fixture::new().await;
    let pool = fx.funded_pool(1_600).await;
    let user = fx.funded(0).await;
    // 1,200 from shards of 100 each: no shard pays it alone.
    fx.ledger
        .transfer(TransferRequest::transfer(pool.id, user.id, units(1_200)))
        .await
        .unwrap();
    let shards: Vec<i64> = sqlx::query_scalar(
        "SELECT posted FROM blockchain.balances WHERE wallet_id = $1 ORDER BY shard",
    )
    .bind(pool.id.as_uuid())
    .fetch_all(fx.db.pool())
    .await
    .unwrap();
    assert_eq!(shards.iter().sum::<i64>(), 400);
    assert!(
        shards.iter().all(|posted| (25..=26).contains(posted)),
        "{shards:?}"
    );
    fx.assert_invariants().await;
}
