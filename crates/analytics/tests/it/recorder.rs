//! The recorder: nothing lost across a graceful close under load; bounded memory and counted
//! drops while the database is stopped, and everything accepted written once it is back.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use analytics::{AnalyticsError, Event, MetricPoint, Overflow, Recorded, Recorder, RecorderConfig};
use db_core::migrate::{Migrator, UpOptions};
use db_core::sqlx::{self, Connection, PgConnection};
use db_core::{Db, DbConfig, Durability, LocalCluster, LocalClusterConfig};

use crate::support::Fixture;

fn event(n: u64) -> Event {
    Event::new("order_placed")
        .user(uuid::Uuid::new_v4())
        .properties(serde_json::json!({"n": n, "note": "tab\there, line\nthere, back\\slash"}))
}

#[tokio::test]
async fn a_graceful_close_under_load_loses_no_accepted_row() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig {
        batch_rows: 500,
        flush_interval: Duration::from_millis(50),
        ..RecorderConfig::default()
    });
    let accepted = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for producer in 0..8_u64 {
        let (recorder, accepted) = (recorder.clone(), accepted.clone());
        producers.push(tokio::spawn(async move {
            let mut n = 0_u64;
            loop {
                n += 1;
                let outcome = if n.is_multiple_of(2) {
                    recorder.record_event(event(n)).await
                } else {
                    let point = MetricPoint::new("load_test", n as f64)
                        .label("producer", producer.to_string());
                    recorder.record_metric(point).await
                };
                match outcome {
                    Ok(Recorded::Buffered) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Recorded::Dropped) => {}
                    Err(AnalyticsError::Closed) => return,
                    Err(error) => panic!("{error}"),
                }
                if n.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stats = recorder.close().await;
    for producer in producers {
        producer.await.unwrap();
    }
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(accepted > 10_000, "the load was light: {accepted} rows");
    let rows = fx.count("SELECT count(*) FROM analytics.events").await
        + fx.count("SELECT count(*) FROM analytics.metrics").await;
    assert_eq!(rows as u64, accepted, "{stats:?}");
    assert_eq!(
        (stats.accepted, stats.written, stats.lost, stats.rejected),
        (accepted, accepted, 0, 0)
    );
    assert!(matches!(
        recorder.record_event(Event::new("late")).await,
        Err(AnalyticsError::Closed)
    ));
    let escaped: String =
        sqlx::query_scalar("SELECT properties->>'note' FROM analytics.events LIMIT 1")
            .fetch_one(fx.db.pool())
            .await
            .unwrap();
    assert_eq!(escaped, "tab\there, line\nthere, back\\slash");
}

/// A cluster of its own, which the test can stop and start again.
struct StoppableCluster {
    dir: tempfile::TempDir,
    cluster: LocalCluster,
}

impl StoppableCluster {
    fn config(dir: &std::path::Path) -> LocalClusterConfig {
        LocalClusterConfig {
            durability: Durability::Ephemeral,
            ..LocalClusterConfig::new(dir.join("pg"))
        }
    }

    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cluster = LocalCluster::start(Self::config(dir.path())).await.unwrap();
        let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres"))
            .await
            .unwrap();
        Migrator::new(vec![analytics::migration_set()])
            .unwrap()
            .up(&mut connection, UpOptions::default())
            .await
            .unwrap();
        connection.close().await.unwrap();
        Self { dir, cluster }
    }

    async fn db(&self) -> Db {
        Db::connect_with(
            &DbConfig::default(),
            self.cluster.connect_options("postgres"),
        )
        .await
        .unwrap()
    }

    fn stop(&mut self) {
        self.cluster.stop().unwrap();
    }

    async fn restart(&mut self) {
        self.cluster = LocalCluster::start(Self::config(self.dir.path()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn while_the_database_is_stopped_memory_stays_bounded_and_drops_are_counted() {
    let mut server = StoppableCluster::start().await;
    let db = server.db().await;
    let config = RecorderConfig {
        buffer_rows: 1_000,
        batch_rows: 100,
        flush_interval: Duration::from_millis(50),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::start(&db, config.clone());
    recorder.record_event(Event::new("before")).await.unwrap();
    recorder.flush().await.unwrap();

    server.stop();
    let mut outcomes = (0, 0);
    for n in 0..20_000 {
        match recorder.record_event(event(n)).await.unwrap() {
            Recorded::Buffered => outcomes.0 += 1,
            Recorded::Dropped => outcomes.1 += 1,
        }
        if n % 1_000 == 0 {
            // Let the writer try (and fail) meanwhile.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stats = recorder.stats();
    let bound = (config.buffer_rows + 2 * config.batch_rows) as u64;
    assert!(stats.pending() <= bound, "{stats:?}");
    assert_eq!(stats.dropped, outcomes.1, "every dropped row is counted");
    assert!(stats.dropped >= 20_000 - bound, "{stats:?}");
    assert!(stats.failed_writes > 0, "{stats:?}");
    assert!(
        recorder.flush().await.is_err(),
        "a flush reports the failure"
    );

    server.restart().await;
    let before_recovery = recorder.stats();
    tokio::time::timeout(Duration::from_secs(30), async {
        while recorder.flush().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the recorder recovers once the database is back");
    let stats = recorder.close().await;
    // A new connection: the pool's died with the server.
    let mut connection = PgConnection::connect_with(&server.cluster.connect_options("postgres"))
        .await
        .unwrap();
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.events")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(written as u64, 1 + outcomes.0, "{stats:?}");
    assert_eq!(stats.written, written as u64);
    assert_eq!(
        (stats.lost, stats.pending()),
        (0, 0),
        "{stats:?} {before_recovery:?}"
    );
}

#[tokio::test]
async fn waiting_for_room_is_bounded_then_drops() {
    let mut server = StoppableCluster::start().await;
    let db = server.db().await;
    let recorder = Recorder::start(
        &db,
        RecorderConfig {
            buffer_rows: 10,
            batch_rows: 5,
            flush_interval: Duration::from_millis(20),
            overflow: Overflow::Wait(Duration::from_millis(50)),
            close_timeout: Duration::from_millis(200),
            ..RecorderConfig::default()
        },
    );
    server.stop();
    let mut dropped = 0;
    let started = std::time::Instant::now();
    for n in 0..40 {
        if recorder.record_event(event(n)).await.unwrap() == Recorded::Dropped {
            dropped += 1;
        }
    }
    assert!(dropped > 0);
    assert!(
        started.elapsed() >= Duration::from_millis(50) * dropped,
        "each drop waited its bound first"
    );
    let stats = recorder.close().await;
    assert_eq!(stats.dropped, dropped as u64);
    assert_eq!(
        stats.lost, stats.accepted,
        "a close that cannot write counts what it gives up: {stats:?}"
    );
}

#[tokio::test]
async fn invalid_rows_are_refused_before_they_are_buffered() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig::default());
    let refused = recorder
        .record_metrics(vec![
            MetricPoint::new("fine", 1.0),
            MetricPoint::new("not fine", 1.0),
        ])
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        AnalyticsError::InvalidField { field: "name", .. }
    ));
    assert!(matches!(
        recorder.record_event(Event::new("")).await,
        Err(AnalyticsError::InvalidField { field: "kind", .. })
    ));
    assert!(matches!(
        recorder
            .record_event(Event::new("x").properties(serde_json::json!("text")))
            .await,
        Err(AnalyticsError::InvalidField {
            field: "properties",
            ..
        })
    ));
    let stats = recorder.close().await;
    assert_eq!(stats.accepted, 0, "nothing of a refused batch was buffered");
}
