//! The bridge from the `metrics` facade: what the service's own counters, gauges and
//! histograms recorded reaches `analytics.metrics`, and only the selected names.

use analytics::{MetricsBridge, RecorderConfig};
use db_core::sqlx;

use crate::support::Fixture;

#[tokio::test]
async fn the_bridge_writes_what_the_facade_recorded() {
    let fx = Fixture::new().await;
    let recorder = fx.recorder(RecorderConfig::default());
    let bridge = MetricsBridge::new(["fodi_http_*", "fodi_queue_depth"]);
    metrics::with_local_recorder(&bridge, || {
        metrics::counter!("fodi_http_requests_total", "route" => "/orders").increment(3);
        metrics::counter!("fodi_http_requests_total", "route" => "/orders").increment(2);
        metrics::counter!("fodi_http_requests_total", "route" => "/menu").increment(1);
        metrics::gauge!("fodi_queue_depth").set(7.5);
        metrics::histogram!("fodi_http_latency_seconds").record(0.25);
        metrics::histogram!("fodi_http_latency_seconds").record(0.75);
        metrics::counter!("not_selected_total").increment(1);
    });
    let report = bridge.snapshot_into(&recorder).await;
    assert_eq!((report.recorded, report.dropped, report.invalid), (5, 0, 0));
    recorder.flush().await.unwrap();

    let rows: Vec<(String, Option<String>, f64)> = sqlx::query_as(
        "SELECT s.name, s.labels->>'route', m.value
           FROM analytics.metrics m JOIN analytics.metric_series s ON s.id = m.series_id
          ORDER BY 1, 2, 3",
    )
    .fetch_all(fx.db.pool())
    .await
    .unwrap();
    let expected = [
        ("fodi_http_latency_seconds", None, 0.25),
        ("fodi_http_latency_seconds", None, 0.75),
        ("fodi_http_requests_total", Some("/menu"), 1.0),
        ("fodi_http_requests_total", Some("/orders"), 5.0),
        ("fodi_queue_depth", None, 7.5),
    ];
    assert_eq!(
        rows,
        expected
            .iter()
            .map(|(name, route, value)| ((*name).to_owned(), route.map(str::to_owned), *value))
            .collect::<Vec<_>>()
    );

    // Histogram samples are taken once; counters are cumulative.
    metrics::with_local_recorder(&bridge, || {
        metrics::counter!("fodi_http_requests_total", "route" => "/menu").increment(1);
    });
    let report = bridge.snapshot_into(&recorder).await;
    assert_eq!(
        report.recorded, 3,
        "two counters and the gauge, no histogram sample"
    );
    recorder.close().await;
    let menu: Vec<f64> = sqlx::query_scalar(
        "SELECT m.value FROM analytics.metrics m JOIN analytics.metric_series s ON s.id = m.series_id
          WHERE s.labels->>'route' = '/menu' ORDER BY m.value",
    )
    .fetch_all(fx.db.pool())
    .await
    .unwrap();
    assert_eq!(menu, [1.0, 2.0]);
}
