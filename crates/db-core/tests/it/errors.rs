//! Classification of real server errors, and retrying real serialisation conflicts.

use std::sync::Arc;

use db_core::migrate::core_set;
use db_core::sqlx::{self, Connection, PgConnection, PgPool};
use db_core::testing::TestDb;
use db_core::{Db, DbConfig, DbError, RetryPolicy, with_retry};
use tokio::sync::Barrier;

async fn execute(pool: &PgPool, sql: &'static str) -> Result<(), DbError> {
    sqlx::raw_sql(sql).execute(pool).await?;
    Ok(())
}

#[tokio::test]
async fn constraint_violations_name_their_constraint() {
    let db = TestDb::new(vec![core_set()]).await;
    let pool = db.pool();
    execute(pool, "INSERT INTO users (email) VALUES ('ada@example.com')")
        .await
        .unwrap();

    let duplicate = execute(pool, "INSERT INTO users (email) VALUES ('ADA@example.com')")
        .await
        .unwrap_err();
    assert!(
        matches!(&duplicate, DbError::UniqueViolation { constraint, .. } if constraint == "users_email_key"),
        "{duplicate:?}"
    );

    let orphan = execute(
        pool,
        "INSERT INTO businesses (owner_id, name, slug) VALUES (gen_random_uuid(), 'x', 'x')",
    )
    .await
    .unwrap_err();
    assert_eq!(
        orphan.constraint(),
        Some("businesses_owner_id_fkey"),
        "{orphan:?}"
    );
    assert!(matches!(orphan, DbError::ForeignKeyViolation { .. }));

    let negative = execute(
        pool,
        "INSERT INTO businesses (owner_id, name, slug) SELECT id, 'Bistro', 'bistro' FROM users;
         INSERT INTO products (business_id, name, price_minor) SELECT id, 'Soup', -1 FROM businesses",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&negative, DbError::CheckViolation { constraint, field: Some(field), .. } if constraint == "products_price_not_negative" && field == "price"),
        "{negative:?}"
    );

    let missing = execute(pool, "INSERT INTO users (display_name) VALUES ('no email')")
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, DbError::NotNullViolation { column, .. } if column == "email"),
        "{missing:?}"
    );

    let overflow = execute(pool, "SELECT 9223372036854775807::bigint + 1")
        .await
        .unwrap_err();
    assert!(
        matches!(overflow, DbError::NumericOutOfRange { .. }),
        "{overflow:?}"
    );
    assert!(!overflow.is_retryable() && !duplicate.is_retryable());
}

#[tokio::test]
async fn a_statement_timeout_is_classified() {
    let db = TestDb::empty().await;
    let error = execute(
        db.pool(),
        "SET statement_timeout = '50ms'; SELECT pg_sleep(2)",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DbError::StatementTimeout { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_deadlock_is_retryable() {
    let db = TestDb::empty().await;
    execute(
        db.pool(),
        "CREATE TABLE pair (id int PRIMARY KEY, n int); INSERT INTO pair VALUES (1, 0), (2, 0)",
    )
    .await
    .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let lock_in_order = |first: i32, second: i32| {
        let (pool, barrier) = (db.pool().clone(), barrier.clone());
        async move {
            let mut transaction = pool.begin().await.unwrap();
            sqlx::query("UPDATE pair SET n = n + 1 WHERE id = $1")
                .bind(first)
                .execute(&mut *transaction)
                .await
                .unwrap();
            barrier.wait().await;
            let result = sqlx::query("UPDATE pair SET n = n + 1 WHERE id = $1")
                .bind(second)
                .execute(&mut *transaction)
                .await;
            match result {
                Ok(_) => transaction.commit().await.map_err(DbError::from),
                Err(error) => Err(DbError::from(error)),
            }
        }
    };
    let (a, b) = tokio::join!(lock_in_order(1, 2), lock_in_order(2, 1));
    let failures: Vec<DbError> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(
        failures.len(),
        1,
        "PostgreSQL aborts exactly one side of the deadlock"
    );
    assert!(
        matches!(failures[0], DbError::Deadlock { .. }),
        "{:?}",
        failures[0]
    );
    assert!(failures[0].is_retryable());
}

#[tokio::test]
async fn serialisation_conflicts_between_many_clients_are_retried_to_success() {
    const CLIENTS: usize = 16;
    let db = TestDb::empty().await;
    execute(db.pool(), "CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    let policy = RetryPolicy {
        max_attempts: 100,
        ..RetryPolicy::default()
    };
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (pool, barrier, conflicts) = (db.pool().clone(), barrier.clone(), conflicts.clone());
        clients.push(tokio::spawn(async move {
            barrier.wait().await;
            with_retry(&policy, || async {
                let result = increment_serializably(&pool).await;
                if let Err(error) = &result {
                    assert!(
                        matches!(error, DbError::SerializationFailure { .. }),
                        "{error:?}"
                    );
                    conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                result
            })
            .await
        }));
    }
    for client in clients {
        client.await.unwrap().unwrap();
    }
    let value: i32 = sqlx::query_scalar("SELECT value FROM counter")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        value, CLIENTS as i32,
        "every increment applied exactly once"
    );
    assert!(
        conflicts.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the clients really conflicted"
    );
}

async fn increment_serializably(pool: &PgPool) -> Result<(), DbError> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .execute(&mut *transaction)
        .await?;
    let value: i32 = sqlx::query_scalar("SELECT value FROM counter WHERE id = 1")
        .fetch_one(&mut *transaction)
        .await?;
    tokio::task::yield_now().await;
    sqlx::query("UPDATE counter SET value = $1 WHERE id = 1")
        .bind(value + 1)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(())
}

#[tokio::test]
async fn connection_failures_say_what_failed() {
    let unreachable = Db::connect(&DbConfig::with_url("postgres://fodi@127.0.0.1:1/fodi"))
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, DbError::Unreachable { .. }),
        "{unreachable:?}"
    );
    assert_eq!(
        unreachable.to_string(),
        "cannot reach PostgreSQL at 127.0.0.1:1/fodi"
    );

    let no_socket = Db::connect(&DbConfig::with_url(
        "postgres://fodi@localhost/fodi?host=/nonexistent",
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(no_socket, DbError::Unreachable { .. }),
        "{no_socket:?}"
    );

    let db = TestDb::empty().await;
    let missing_database = db_core::connect(&db.connect_options().database("no_such_database"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing_database, DbError::DatabaseMissing { ref database, .. } if database == "no_such_database"),
        "{missing_database:?}"
    );

    let unknown_role = db_core::connect(&db.connect_options().username("no_such_role"))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown_role, DbError::AuthenticationFailed { ref user, .. } if user == "no_such_role"),
        "{unknown_role:?}"
    );
}

#[tokio::test]
async fn a_lost_connection_is_retryable() {
    let db = TestDb::empty().await;
    let mut victim = PgConnection::connect_with(&db.connect_options())
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(db.pool())
        .await
        .unwrap();
    let error = DbError::from(
        sqlx::query("SELECT 1")
            .execute(&mut victim)
            .await
            .unwrap_err(),
    );
    assert!(matches!(error, DbError::ConnectionLost { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn pools_apply_session_settings_and_refuse_impossible_bounds() {
    let db = TestDb::empty().await;
    let config = DbConfig {
        statement_timeout: Some(std::time::Duration::from_millis(1234)),
        application_name: "fodi-test".into(),
        ..DbConfig::with_url(db.url())
    };
    let pool = Db::connect(&config).await.unwrap();
    let (timeout, name): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('application_name')",
    )
    .fetch_one(pool.primary())
    .await
    .unwrap();
    assert_eq!((timeout.as_str(), name.as_str()), ("1234ms", "fodi-test"));
    assert!(
        std::ptr::eq(pool.read(), pool.primary()),
        "without a replica, reads go to the primary"
    );
    pool.close().await;

    let impossible = DbConfig {
        min_connections: 5,
        max_connections: 2,
        ..DbConfig::with_url(db.url())
    };
    assert!(matches!(
        Db::connect(&impossible).await,
        Err(DbError::InvalidConfig { .. })
    ));
}
