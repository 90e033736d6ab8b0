//! The per-test database fixture itself.

use db_core::migrate::core_set;
use db_core::sqlx;
use db_core::testing::TestDb;

async fn database_exists(db: &TestDb, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_test_databases_do_not_see_each_others_rows() {
    let (first, second) =
        tokio::join!(TestDb::new(vec![core_set()]), TestDb::new(vec![core_set()]));
    assert_ne!(first.name(), second.name());
    sqlx::query("INSERT INTO users (email) VALUES ('only-in-first@example.com')")
        .execute(first.pool())
        .await
        .unwrap();
    let in_first: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(first.pool())
        .await
        .unwrap();
    let in_second: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(second.pool())
        .await
        .unwrap();
    assert_eq!((in_first, in_second), (1, 0));
}

#[tokio::test]
async fn test_databases_are_dropped_after_use() {
    let observer = TestDb::empty().await;
    let closed = TestDb::empty().await;
    let closed_name = closed.name().to_owned();
    closed.close().await;
    assert!(!database_exists(&observer, &closed_name).await);

    let dropped_name = {
        let dropped = TestDb::new(vec![core_set()]).await;
        sqlx::query("SELECT 1")
            .execute(dropped.pool())
            .await
            .unwrap();
        dropped.name().to_owned()
    };
    assert!(!database_exists(&observer, &dropped_name).await);
}

#[tokio::test]
async fn a_migrated_test_database_is_current() {
    let db = TestDb::new(vec![core_set()]).await;
    let mut connection = db.pool().acquire().await.unwrap();
    let migrator = db_core::migrate::Migrator::new(vec![core_set()]).unwrap();
    let statuses = migrator.status(&mut connection).await.unwrap();
    assert!(
        statuses.iter().all(|status| status.is_current()),
        "{statuses:?}"
    );
}
