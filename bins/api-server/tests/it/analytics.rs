//! Analytics over HTTP: recording (one or a batch), queries, the rollup refreshed by its job,
//! and a shutdown that loses no acknowledged row.

use std::time::{Duration, Instant};

use db_core::sqlx;
use db_core::testing::TestDb;
use serde_json::{Value, json};

use crate::ledger::Api;
use crate::{documented_fields, fields, spawn, spawn_binary, terminate, with_database};

#[tokio::test]
async fn metrics_and_events_are_recorded_and_queried() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.jobs.daily_stats_refresh = Duration::from_millis(200);
    let (base, handle, running) = spawn(settings).await;
    let api = Api::new(&base);
    let now = chrono::Utc::now();
    let minute = now - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&now)) + 60);

    let points: Vec<Value> = (1..=10)
        .map(|n| json!({ "name": "checkout_ms", "value": n, "labels": { "route": "/orders" }, "time": minute + chrono::Duration::seconds(n) }))
        .collect();
    let (status, accepted) = api.post("/api/v1/analytics/metrics", json!(points)).await;
    assert_eq!(
        (status, accepted["buffered"].as_u64()),
        (202, Some(10)),
        "{accepted}"
    );
    let user = uuid::Uuid::new_v4();
    let (status, _) = api
        .post("/api/v1/analytics/events", json!({ "kind": "order_placed", "user_id": user, "properties": { "total_cents": 2350 } }))
        .await;
    assert_eq!(status, 202);

    let (status, problem) = api
        .post(
            "/api/v1/analytics/metrics",
            json!({ "name": "bad name", "value": 1 }),
        )
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/invalid-field"))
    );
    let (status, problem) = api.post("/api/v1/analytics/events", json!([])).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/batch-size"))
    );

    // The recorder writes within its flush interval; the rollup follows on its job.
    let buckets_path = format!(
        "/api/v1/analytics/metrics/checkout_ms/buckets?from={}&to={}&bucket_seconds=60&labels=%7B%22route%22%3A%22%2Forders%22%7D",
        urlencode(&minute.to_rfc3339()),
        urlencode(&(minute + chrono::Duration::minutes(2)).to_rfc3339())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let buckets = loop {
        let (status, buckets) = api.get(&buckets_path).await;
        assert_eq!(status, 200, "{buckets}");
        if buckets[0]["count"] == 10 {
            break buckets;
        }
        assert!(Instant::now() < deadline, "{buckets}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(buckets.as_array().unwrap().len(), 2);
    let (_, document) = api.get("/api-docs/openapi.json").await;
    let schema = |name: &str| documented_fields(&document, name);
    assert_eq!(fields(&accepted), schema("Recorded"));
    assert_eq!(fields(&buckets[0]), schema("MetricBucket"));
    assert_eq!(fields(&buckets[1]), schema("MetricBucket"));
    assert_eq!(
        (buckets[0]["avg"].as_f64(), buckets[1]["count"].as_i64()),
        (Some(5.5), Some(0))
    );

    let today = now.date_naive();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, stats) = api
            .get(&format!(
                "/api/v1/analytics/daily-stats?from={today}&to={today}"
            ))
            .await;
        assert_eq!(status, 200);
        if stats.as_array().is_some_and(|rows| !rows.is_empty()) {
            assert_eq!(
                (stats[0]["kind"].as_str(), stats[0]["unique_users"].as_i64()),
                (Some("order_placed"), Some(1))
            );
            assert_eq!(fields(&stats[0]), schema("EventCount"));
            break;
        }
        assert!(Instant::now() < deadline, "the rollup was never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, counts) = api
        .get(&format!(
            "/api/v1/analytics/events/counts?from={today}&to={today}&kind=order_placed"
        ))
        .await;
    assert_eq!((status, counts[0]["events"].as_i64()), (200, Some(1)));
    assert_eq!(fields(&counts[0]), schema("EventCount"));
    let (status, _) = api
        .get(&format!("/api/v1/analytics/events/counts?from={today}"))
        .await;
    assert_eq!(status, 400);

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn a_graceful_shutdown_loses_no_acknowledged_event() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let mut acknowledged = 0;
    for batch in 0..20 {
        let events: Vec<Value> = (0..50)
            .map(|n| json!({ "kind": "load", "properties": { "n": batch * 50 + n } }))
            .collect();
        let (status, body) = api.post("/api/v1/analytics/events", json!(events)).await;
        assert_eq!(status, 202);
        acknowledged += body["buffered"].as_u64().unwrap();
    }
    // Stopped at once: the recorder's buffer is written on the way out.
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM analytics.events WHERE kind = 'load'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(written as u64, acknowledged);
    assert_eq!(acknowledged, 1_000);
}

#[tokio::test]
async fn the_server_s_own_metrics_reach_analytics_through_the_bridge() {
    // The binary, so that its process installs the bridge (the test process has one recorder).
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, mut server) = spawn_binary(
        &db,
        "[analytics]\nbridge_metrics = [\"fodi_http_*\"]\nbridge_interval = \"200ms\"\n",
    )
    .await;
    for _ in 0..5 {
        reqwest::get(format!("{base}/health")).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let copied: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM analytics.metrics m JOIN analytics.metric_series s ON s.id = m.series_id
              WHERE s.name = 'fodi_http_request_duration_seconds'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if copied >= 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{copied} request durations copied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unselected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM analytics.metric_series WHERE name NOT LIKE 'fodi_http%'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(unselected, 0, "only the selected metrics are copied");
    assert!(terminate(&mut server).await.success());
}

/// The replay of a poison row: an event at the year 0 used to be answered 202 and then hold
/// every later event back. It is now refused with the row named, and the events after it
/// land.
#[tokio::test]
async fn a_time_outside_the_window_is_refused_naming_the_row_and_ingestion_goes_on() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let (status, problem) = api
        .post(
            "/api/v1/analytics/events",
            json!([
                { "kind": "menu_viewed" },
                { "kind": "menu_viewed", "time": "0000-01-01T00:00:00Z" }
            ]),
        )
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/invalid-field")),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("time") && detail.contains("row 1"),
        "{detail}"
    );

    let (status, _) = api
        .post(
            "/api/v1/analytics/events",
            json!({ "kind": "order_placed" }),
        )
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM analytics.events")
            .fetch_all(db.pool())
            .await
            .unwrap();
        if !kinds.is_empty() {
            assert_eq!(kinds, ["order_placed"], "nothing of the refused batch");
            break;
        }
        assert!(Instant::now() < deadline, "the later event never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
