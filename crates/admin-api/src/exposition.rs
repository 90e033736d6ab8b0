//! The Prometheus exposition both binaries serve on `/metrics`: durations as real histograms
//! (buckets, so that a fleet's percentiles can be computed with `histogram_quantile`), and the
//! recorder's upkeep run on its own.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, of every `*_seconds` histogram: 1 ms to 30 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the recorder's upkeep runs (its summaries' windows, idle metrics' removal).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A builder whose `*_seconds` metrics are histograms with [`DURATION_BUCKETS`].
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
        // The bounds above are fixed and valid: the builder only refuses an empty list.
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Runs the recorder's upkeep every few seconds for as long as the process lives. Without
/// it, the recorder's memory grows with every observation until something renders it.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread");
    }
}
