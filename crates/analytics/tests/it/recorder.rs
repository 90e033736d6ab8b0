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

/// A row the database refuses (here: the year 0, which PostgreSQL does not have, let through
/// by a window of millennia) is counted and dropped; every row around it lands, and ingestion
/// goes on. It used to hold its whole batch, and everything behind it, in a retry loop.
#[tokio::test]
async fn a_row_the_database_refuses_is_isolated_and_the_others_land() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig {
        accept_past: Duration::from_secs(3_000 * 365 * 24 * 3600),
        batch_rows: 64,
        ..RecorderConfig::default()
    });
    let year_zero: chrono::DateTime<chrono::Utc> = "0000-01-01T00:00:00Z".parse().unwrap();
    let mut events: Vec<Event> = (0..100).map(event).collect();
    events[37] = event(37).at(year_zero);
    let mut points: Vec<MetricPoint> = (0..100)
        .map(|n| MetricPoint::new("orders_total", n as f64))
        .collect();
    points[5] = MetricPoint::new("orders_total", 5.0).at(year_zero);
    points[90] = MetricPoint::new("orders_total", 90.0).at(year_zero);
    recorder.record_events(events).await.unwrap();
    recorder.record_metrics(points).await.unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(fx.count("SELECT count(*) FROM analytics.events").await, 99);
    assert_eq!(fx.count("SELECT count(*) FROM analytics.metrics").await, 98);
    let stats = recorder.stats();
    assert_eq!(
        (stats.written, stats.rejected, stats.pending()),
        (197, 3, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.failed_writes, 0,
        "a refused row is no failure of the connection"
    );

    // Ingestion goes on.
    recorder
        .record_events((100..110).map(event).collect())
        .await
        .unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(fx.count("SELECT count(*) FROM analytics.events").await, 109);
    recorder.close().await;
}

#[tokio::test]
async fn times_outside_the_window_are_refused_naming_the_row() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig::default());
    let year_zero = "0000-01-01T00:00:00Z".parse().unwrap();
    let mut events: Vec<Event> = (0..5).map(event).collect();
    events[3] = event(3).at(year_zero);
    let refused = recorder.record_events(events).await.unwrap_err();
    let AnalyticsError::InvalidField { field, reason } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(*field, "time");
    assert!(reason.starts_with("row 3: "), "{reason}");
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    assert!(matches!(
        recorder
            .record_metric(MetricPoint::new("orders_total", 1.0).at(tomorrow))
            .await,
        Err(AnalyticsError::InvalidField { field: "time", .. })
    ));
    let stats = recorder.close().await;
    assert_eq!(stats.accepted, 0, "nothing of a refused batch was buffered");
    assert_eq!(fx.count("SELECT count(*) FROM analytics.events").await, 0);
}

/// The buffer is bounded in bytes as well as rows: large events fill it long before its row
/// count, and what does not fit is dropped and counted, not held.
#[tokio::test]
async fn the_buffer_is_bounded_in_bytes() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig {
        buffer_bytes: 1024 * 1024,
        // Nothing is written before the flush below: every accepted row stays buffered.
        flush_interval: Duration::from_secs(3600),
        ..RecorderConfig::default()
    });
    let large = |n: u64| {
        Event::new("page_viewed")
            .properties(serde_json::json!({ "n": n, "blob": "x".repeat(60_000) }))
    };
    let mut buffered = 0;
    for n in 0..40 {
        if recorder.record_event(large(n)).await.unwrap() == Recorded::Buffered {
            buffered += 1;
        }
    }
    assert!(
        (15..=17).contains(&buffered),
        "about 1 MiB of 60 kB events: {buffered}"
    );
    assert_eq!(recorder.stats().dropped, 40 - buffered);
    recorder.flush().await.unwrap();
    // Written, their bytes are free again.
    assert_eq!(
        recorder.record_event(large(99)).await.unwrap(),
        Recorded::Buffered
    );
    recorder.close().await;
}
