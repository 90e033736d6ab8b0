//! The series cap: a metric gets at most `max_series_per_metric` label combinations, across
//! every recorder writing it; points past the cap are rejected and counted.

use std::collections::BTreeSet;

use analytics::{MetricPoint, RecorderConfig};

use crate::support::Fixture;

#[tokio::test]
async fn series_past_a_metric_s_cap_are_rejected_and_counted() {
    let fx = Fixture::new().await;
    let config = RecorderConfig {
        max_series_per_metric: 3,
        ..RecorderConfig::default()
    };
    // Two processes' recorders, each inventing label values: together they may create three.
    let (first, second) = (fx.recorder(config.clone()), fx.recorder(config));
    let point = |user: u32| MetricPoint::new("per_user", 1.0).label("user", user.to_string());
    for user in 0..5 {
        first.record_metric(point(user)).await.unwrap();
        second.record_metric(point(user + 100)).await.unwrap();
    }
    first.record_metric(point(0)).await.unwrap();
    first
        .record_metric(MetricPoint::new("other_metric", 1.0).label("user", "9"))
        .await
        .unwrap();
    let (a, b) = tokio::join!(first.flush(), second.flush());
    a.unwrap();
    b.unwrap();

    let series: BTreeSet<String> = db_core::sqlx::query_scalar(
        "SELECT labels->>'user' FROM analytics.metric_series WHERE name = 'per_user'",
    )
    .fetch_all(fx.db.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(series.len(), 3, "{series:?}");
    let (first, second) = (first.close().await, second.close().await);
    // The points of the three series that won are written, whichever they are; the rest,
    // rejected.
    let recorded_users = [0, 1, 2, 3, 4, 0, 100, 101, 102, 103, 104];
    let kept = recorded_users
        .iter()
        .filter(|user| series.contains(&user.to_string()))
        .count() as u64;
    assert_eq!(
        first.written + second.written,
        kept + 1,
        "{first:?} {second:?}"
    );
    assert_eq!(first.rejected + second.rejected, 11 - kept);
    let points = fx.count("SELECT count(*) FROM analytics.metrics").await as u64;
    assert_eq!(points, first.written + second.written);
    assert_eq!(
        first.written + second.written + first.rejected + second.rejected,
        12,
        "every point written or rejected"
    );
    assert_eq!(
        fx.count("SELECT count(*) FROM analytics.metric_series WHERE name = 'other_metric'")
            .await,
        1,
        "another metric has a cap of its own"
    );
}
