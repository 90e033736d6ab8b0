//! Reads on a real streaming replica (`pg_basebackup -R`): they go there while it keeps up,
//! to the primary while it lags past `replica_max_lag` or is down, and no answer changes.

use std::time::{Duration, Instant};

use db_core::sqlx;
use db_core::testing::replica::ReplicatedClusters;
use db_core::{Db, DbConfig};

async fn eventually(what: &str, mut holds: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows a server holds; -1 before the table reached it.
async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

#[tokio::test]
async fn reads_go_to_a_replica_that_keeps_up_and_to_the_primary_otherwise() {
    let mut clusters = ReplicatedClusters::start().await;
    let config = DbConfig {
        replica_url: Some(clusters.replica_url("postgres")),
        replica_max_lag: Duration::from_secs(1),
        application_name: "fodi-replica-test".into(),
        ..DbConfig::with_url(clusters.primary_url("postgres"))
    };
    let db = Db::connect(&config).await.unwrap();
    sqlx::query("CREATE TABLE readings (id int)")
        .execute(db.primary())
        .await
        .unwrap();
    sqlx::query("INSERT INTO readings SELECT generate_series(1, 10)")
        .execute(db.primary())
        .await
        .unwrap();

    // Caught up: reads go to the replica, and it is the replica that serves them.
    eventually("the replica is used", async || db.reads_from_replica()).await;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(db.read())
        .await
        .unwrap();
    assert!(in_recovery, "read() is the replica");
    eventually("the replica has the rows", async || {
        count(db.read()).await == 10
    })
    .await;
    let replica_admin = sqlx::PgPool::connect(&clusters.replica_url("postgres"))
        .await
        .unwrap();
    let ours: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fodi-replica-test'",
    )
    .fetch_one(&replica_admin)
    .await
    .unwrap();
    assert!(ours >= 1, "the pool's sessions are on the replica");
    assert!(db.replica_lag().unwrap() <= Duration::from_secs(1));

    // Replay paused while the primary writes: past the bound, reads go to the primary and
    // see the new rows; resumed, they go back.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica_admin)
        .await
        .unwrap();
    sqlx::query("INSERT INTO readings SELECT generate_series(11, 20)")
        .execute(db.primary())
        .await
        .unwrap();
    eventually("a lagging replica is left", async || {
        !db.reads_from_replica()
    })
    .await;
    assert_eq!(count(db.read()).await, 20, "the primary answers");
    assert_eq!(count(&replica_admin).await, 10, "the replica is behind");
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica_admin)
        .await
        .unwrap();
    eventually("the replica is used again", async || {
        db.reads_from_replica()
    })
    .await;
    eventually("the replica caught up", async || {
        count(db.read()).await == 20
    })
    .await;

    // Stopped: reads go to the primary, with the same answers.
    replica_admin.close().await;
    clusters.stop_replica();
    eventually("a stopped replica is left", async || {
        !db.reads_from_replica()
    })
    .await;
    assert_eq!(count(db.read()).await, 20);
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(db.read())
        .await
        .unwrap();
    assert!(!in_recovery, "read() is the primary");
    db.close().await;
}
