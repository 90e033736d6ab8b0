//! What the migrations install: roles confined to their schema, functions, triggers, views.

use db_core::DbError;
use db_core::sqlx::{self, PgPool};
use db_core::testing::TestDb;

async fn all_schemas() -> TestDb {
    TestDb::new(migrator::all_sets()).await
}

async fn execute_as(pool: &PgPool, role: &str, sql: &str) -> Result<(), DbError> {
    let mut transaction = pool.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE {role}")))
        .execute(&mut *transaction)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *transaction)
        .await?;
    transaction.rollback().await?;
    Ok(())
}

/// The error `sql`, with `$1` bound to `id`, fails with (the test fails if it succeeds).
async fn refusal(pool: &PgPool, sql: &'static str, id: uuid::Uuid) -> DbError {
    sqlx::query(sql)
        .bind(id)
        .execute(pool)
        .await
        .map_err(DbError::from)
        .unwrap_err()
}

async fn user(pool: &PgPool) -> uuid::Uuid {
    sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id")
        .bind(format!("{}@example.com", uuid::Uuid::new_v4()))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_member_of_fodi_ai_writes_ai_but_not_blockchain() {
    let db = all_schemas().await;
    let pool = db.pool();
    // A login-less member of the group, as a service's own role would be.
    let member = format!("ai_service_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {member} NOLOGIN IN ROLE fodi_ai"
    )))
    .execute(pool)
    .await
    .unwrap();
    let owner = user(pool).await;

    let own_schema = format!(
        "INSERT INTO ai.cache_entries (user_id, cache_key, value) VALUES ('{owner}', 'k', '{{}}')"
    );
    execute_as(pool, &member, &own_schema)
        .await
        .expect("fodi_ai writes its own schema");

    let ledger =
        format!("INSERT INTO blockchain.wallets (user_id, min_balance) VALUES ('{owner}', 0)");
    let refused = execute_as(pool, &member, &ledger).await.unwrap_err();
    assert!(
        matches!(refused, DbError::PermissionDenied { .. }),
        "{refused:?}"
    );
    let history = execute_as(pool, &member, "DELETE FROM ai.refinery_schema_history")
        .await
        .unwrap_err();
    assert!(
        matches!(history, DbError::PermissionDenied { .. }),
        "only the migrator writes history: {history:?}"
    );
    let readonly = execute_as(pool, "fodi_readonly", "DELETE FROM analytics.events")
        .await
        .unwrap_err();
    assert!(
        matches!(readonly, DbError::PermissionDenied { .. }),
        "{readonly:?}"
    );
    execute_as(
        pool,
        "fodi_readonly",
        "SELECT count(*) FROM blockchain.fodi_transactions",
    )
    .await
    .unwrap();

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {member}")))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn cleanup_expired_cache_removes_only_expired_entries_in_bounded_batches() {
    let db = all_schemas().await;
    let pool = db.pool();
    let owner = user(pool).await;
    sqlx::query(
        "INSERT INTO ai.cache_entries (user_id, cache_key, value, expires_at)
         SELECT $1, 'expired-' || n, '{}'::jsonb, now() - interval '1 second' FROM generate_series(1, 25) n
         UNION ALL SELECT $1, 'fresh-' || n, '{}', now() + interval '1 hour' FROM generate_series(1, 5) n
         UNION ALL SELECT $1, 'forever', '{}', NULL",
    )
    .bind(owner)
    .execute(pool)
    .await
    .unwrap();
    let first: i64 = sqlx::query_scalar("SELECT ai.cleanup_expired_cache(10)")
        .fetch_one(pool)
        .await
        .unwrap();
    let rest: i64 = sqlx::query_scalar("SELECT ai.cleanup_expired_cache()")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!((first, rest), (10, 15));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ai.cache_entries")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(left, 6);
}

#[tokio::test]
async fn updated_at_moves_on_update() {
    let db = all_schemas().await;
    let pool = db.pool();
    let id = user(pool).await;
    sqlx::query("UPDATE users SET updated_at = now() - interval '1 day' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    let fresh: bool = sqlx::query_scalar(
        "SELECT updated_at > now() - interval '1 minute' FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(fresh, "the trigger overrides whatever the statement wrote");
}

#[tokio::test]
async fn ledger_constraints_refuse_what_must_never_be_stored() {
    // The ledger crate never writes these; the constraints are the last line of defence
    // against anything else that writes the tables.
    let db = all_schemas().await;
    let pool = db.pool();
    let owner = user(pool).await;
    let wallet: uuid::Uuid = sqlx::query_scalar(
        "WITH w AS (INSERT INTO blockchain.wallets (id, user_id, asset, kind) VALUES (gen_random_uuid(), $1, 'FODI', 'user') RETURNING id)
         INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count, min_balance)
         SELECT id, 0, 'FODI', 1, 0 FROM w RETURNING wallet_id",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
    .unwrap();
    let overdraft = refusal(
        pool,
        "UPDATE blockchain.balances SET posted = -1 WHERE wallet_id = $1",
        wallet,
    )
    .await;
    assert_eq!(overdraft.constraint(), Some("balances_within_limit"));
    let other_asset = refusal(
        pool,
        "INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count) VALUES ($1, 1, 'GEM', 1)",
        wallet,
    )
    .await;
    assert_eq!(other_asset.constraint(), Some("balances_wallet_fkey"));
    let sharded_user = refusal(
        pool,
        "INSERT INTO blockchain.wallets (id, user_id, asset, kind, shard_count) VALUES (gen_random_uuid(), $1, 'GEM', 'user', 4)",
        owner,
    )
    .await;
    assert_eq!(
        sharded_user.constraint(),
        Some("wallets_user_wallets_unsharded")
    );
    let zero = refusal(
        pool,
        "INSERT INTO blockchain.fodi_transactions (id, kind, debit_wallet_id, credit_wallet_id, amount)
         VALUES (gen_random_uuid(), 'transfer', gen_random_uuid(), $1, 0)",
        wallet,
    )
    .await;
    assert_eq!(zero.constraint(), Some("fodi_transactions_well_formed"));
    let deleted = refusal(pool, "DELETE FROM blockchain.wallets WHERE id = $1", wallet).await;
    assert!(
        deleted.to_string().contains("database error")
            || deleted.sqlstate().as_deref() == Some("23001"),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn daily_stats_refreshes_concurrently_through_its_function() {
    let db = all_schemas().await;
    let pool = db.pool();
    sqlx::query(
        "INSERT INTO analytics.events (time, kind, user_id)
         SELECT '2026-11-01T10:00:00Z'::timestamptz + (n || ' minutes')::interval, 'order_placed',
                (ARRAY[gen_random_uuid(), gen_random_uuid()])[1 + n % 2]
         FROM generate_series(1, 10) n",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE fodi_analytics")
        .execute(&mut *transaction)
        .await
        .unwrap();
    sqlx::query("SELECT analytics.refresh_daily_stats()")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let (events, kind): (i64, String) =
        sqlx::query_as("SELECT events, kind FROM analytics.daily_stats WHERE day = '2026-11-01'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((events, kind.as_str()), (10, "order_placed"));
}

#[tokio::test]
async fn every_foreign_key_has_an_index_on_its_referencing_columns() {
    // PostgreSQL checks a foreign key on every delete or key update of the referenced row; without
    // an index led by the referencing columns each check scans the referencing table. Partial
    // indexes count: ours exclude only rows whose key is NULL, which no check looks for.
    let db = all_schemas().await;
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT c.conrelid::regclass::text || ' ' || c.conname
         FROM pg_constraint c
         WHERE c.contype = 'f'
           AND c.connamespace::regnamespace::text IN ('public', 'ai', 'blockchain', 'analytics')
           AND NOT EXISTS (
               SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey)
         ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}
