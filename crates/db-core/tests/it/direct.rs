//! The lean pool: connections come back only when released, and the pool stays bounded.

use std::time::Duration;

use db_core::sqlx;
use db_core::testing::TestDb;
use db_core::{DbError, DirectPool};

async fn backend_pid(connection: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_released_connection_is_reused_and_a_dropped_one_is_replaced() {
    let db = TestDb::empty().await;
    let pool = DirectPool::new(db.connect_options(), 1, Duration::from_secs(5));

    let mut first = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut first).await;
    first.release();
    let mut second = pool.acquire().await.unwrap();
    assert_eq!(
        backend_pid(&mut second).await,
        pid,
        "a released connection is handed out again"
    );

    drop(second); // not released: its statement may not have completed
    let mut third = pool.acquire().await.unwrap();
    assert_ne!(
        backend_pid(&mut third).await,
        pid,
        "a dropped connection is closed and replaced"
    );
    third.release();
    pool.close();
}

#[tokio::test]
async fn the_pool_is_bounded_and_times_out() {
    let db = TestDb::empty().await;
    let pool = DirectPool::new(db.connect_options(), 2, Duration::from_millis(100));
    let held = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    assert!(matches!(pool.acquire().await, Err(DbError::PoolTimedOut)));
    held.0.release();
    assert!(
        pool.acquire().await.is_ok(),
        "a released connection frees a place"
    );
    drop(held.1);
}
