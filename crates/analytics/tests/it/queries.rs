//! Bucket math on known data: every bucket present (empty ones too), aggregates and
//! interpolated percentiles as PostgreSQL's `percentile_cont` defines them, label filters;
//! event counts and unique users per kind and day.

use std::time::Duration;

use analytics::{Analytics, Event, MetricPoint, MetricQuery, RecorderConfig};

/// A recorder that takes the fixed past days these tests query (the default window is a week).
fn historical() -> RecorderConfig {
    RecorderConfig {
        accept_past: std::time::Duration::from_secs(10 * 365 * 24 * 3600),
        ..RecorderConfig::default()
    }
}
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::support::Fixture;

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, minute, second)
        .unwrap()
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|actual| (actual - expected).abs() < 1e-9)
}

#[tokio::test]
async fn buckets_aggregate_known_points_and_fill_the_gaps() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(historical());
    let point = |value: f64, time, route: &str| {
        MetricPoint::new("request_ms", value)
            .label("route", route)
            .label("method", "GET")
            .at(time)
    };
    let mut points = Vec::new();
    // Minute 0: 1..=10 on /orders and 100 on /menu; minute 1: nothing; minute 2: 5 and 7.
    for value in 1..=10 {
        points.push(point(f64::from(value), at(0, value), "/orders"));
    }
    points.push(point(100.0, at(0, 30), "/menu"));
    points.push(point(5.0, at(2, 0), "/orders"));
    points.push(point(7.0, at(2, 59), "/orders"));
    // Outside the range: before it, and at its exclusive end.
    points.push(point(
        1_000.0,
        at(0, 0) - chrono::Duration::seconds(1),
        "/orders",
    ));
    points.push(point(1_000.0, at(3, 0), "/orders"));
    recorder.record_metrics(points).await.unwrap();
    recorder.flush().await.unwrap();

    let query = |labels: &[(&str, &str)]| MetricQuery {
        name: "request_ms".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        from: at(0, 0),
        to: at(3, 0),
        bucket: Duration::from_secs(60),
    };
    let orders = fx
        .analytics
        .metric_buckets(&query(&[("route", "/orders")]))
        .await
        .unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|b| (b.start, b.count))
            .collect::<Vec<_>>(),
        [(at(0, 0), 10), (at(1, 0), 0), (at(2, 0), 2)]
    );
    let first = &orders[0];
    assert!(close(first.sum, 55.0) && close(first.avg, 5.5));
    assert!(close(first.min, 1.0) && close(first.max, 10.0));
    // percentile_cont over 1..=10: position p * (n - 1) between neighbours.
    assert!(close(first.p50, 5.5), "{first:?}");
    assert!(close(first.p95, 9.55), "{first:?}");
    assert!(close(first.p99, 9.91), "{first:?}");
    let empty = &orders[1];
    assert_eq!(
        (empty.sum, empty.avg, empty.min, empty.max, empty.p50),
        (None, None, None, None, None)
    );
    assert!(close(orders[2].avg, 6.0) && close(orders[2].p50, 6.0));

    // Without a label filter both routes count; a filter matching nothing gives empty buckets.
    let all = fx.analytics.metric_buckets(&query(&[])).await.unwrap();
    assert_eq!(all[0].count, 11);
    assert!(close(all[0].max, 100.0));
    let none = fx
        .analytics
        .metric_buckets(&query(&[("route", "/nowhere")]))
        .await
        .unwrap();
    assert_eq!(none.len(), 3);
    assert!(none.iter().all(|bucket| bucket.count == 0));

    // A bucket that does not divide the range: the last one is shorter.
    let mut uneven = query(&[("route", "/orders")]);
    uneven.bucket = Duration::from_secs(100);
    let buckets = fx.analytics.metric_buckets(&uneven).await.unwrap();
    assert_eq!(
        buckets.iter().map(|b| b.count).collect::<Vec<_>>(),
        [10, 2],
        "[0:00, 1:40) and [1:40, 3:00)"
    );
}

#[tokio::test]
async fn bad_queries_are_typed_errors() {
    let fx = Fixture::new().await;
    let good = MetricQuery {
        name: "x".into(),
        labels: Default::default(),
        from: at(0, 0),
        to: at(10, 0),
        bucket: Duration::from_secs(60),
    };
    for (query, field) in [
        (
            MetricQuery {
                to: at(0, 0),
                ..good.clone()
            },
            "to",
        ),
        (
            MetricQuery {
                bucket: Duration::from_millis(10),
                ..good.clone()
            },
            "bucket",
        ),
        (
            MetricQuery {
                to: at(0, 0) + chrono::Duration::days(30),
                bucket: Duration::from_secs(1),
                ..good.clone()
            },
            "bucket",
        ),
        (
            MetricQuery {
                name: "bad name".into(),
                ..good.clone()
            },
            "name",
        ),
    ] {
        match fx.analytics.metric_buckets(&query).await {
            Err(analytics::AnalyticsError::InvalidField { field: got, .. }) => {
                assert_eq!(got, field);
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let day = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    assert!(
        fx.analytics
            .event_counts(day, day.pred_opt().unwrap(), None)
            .await
            .is_err()
    );
    assert!(fx.analytics.event_counts(day, day, Some("")).await.is_err());
}

#[tokio::test]
async fn events_are_counted_per_kind_and_day_with_unique_users() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(historical());
    let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let day = |d: u32, hour: u32| Utc.with_ymd_and_hms(2026, 11, d, hour, 0, 0).unwrap();
    let events = vec![
        Event::new("order_placed").user(alice).at(day(2, 1)),
        Event::new("order_placed").user(alice).at(day(2, 23)),
        Event::new("order_placed").user(bob).at(day(2, 12)),
        Event::new("order_placed").at(day(2, 13)),
        Event::new("menu_viewed").user(bob).at(day(2, 9)),
        Event::new("order_placed").user(bob).at(day(3, 0)),
        Event::new("order_placed").user(bob).at(day(5, 0)),
    ];
    recorder.record_events(events).await.unwrap();
    recorder.flush().await.unwrap();
    let date = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let counts = fx
        .analytics
        .event_counts(date(2), date(3), None)
        .await
        .unwrap();
    let rows: Vec<(u32, &str, i64, i64)> = counts
        .iter()
        .map(|c| {
            (
                chrono::Datelike::day(&c.day),
                c.kind.as_str(),
                c.events,
                c.unique_users,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (2, "menu_viewed", 1, 1),
            (2, "order_placed", 4, 2),
            (3, "order_placed", 1, 1)
        ]
    );
    let orders = fx
        .analytics
        .event_counts(date(1), date(30), Some("order_placed"))
        .await
        .unwrap();
    assert_eq!(orders.iter().map(|c| c.events).sum::<i64>(), 6);
}
