//! Product analytics in PostgreSQL schema `analytics`: metric points and events recorded at a
//! high rate without slowing the caller, the time-bucketed queries a dashboard asks, the
//! `daily_stats` rollup, daily partitions with retention, and a bridge from the `metrics`
//! facade.
//!
//! - [`Recorder`]: a cloneable handle that buffers rows and writes them with `COPY` in
//!   batches; its buffer is bounded and, when full, drops and counts ([`Overflow`]).
//! - [`PgAnalytics`] implements [`Analytics`]: bucketed metric aggregates with percentiles
//!   and empty buckets filled, event counts and unique users per kind and day, the rollup's
//!   refresh (one instance at a time) and partition maintenance.
//! - [`MetricsBridge`]: a `metrics` recorder layer whose selected counters, gauges and
//!   histograms are snapshotted into `analytics.metrics` on an interval.
//!
//! This crate owns schema `analytics` and ships its migrations ([`migration_set`]); it depends
//! on `db-core` only, never on HTTP or on another domain crate. Start reading at [`recorder`]
//! and [`queries`].

pub mod bridge;
mod config;
mod error;
pub mod model;
pub mod partitions;
pub mod queries;
pub mod recorder;
mod store;

pub use bridge::MetricsBridge;
pub use config::{Overflow, PartitionConfig, RecorderConfig};
pub use error::AnalyticsError;
pub use model::{Event, Labels, MAX_LABEL_VALUE_CHARS, MAX_LABELS, MetricPoint};
pub use partitions::PartitionReport;
pub use queries::{Aggregates, Analytics, DailyStat, EventCount, MetricQuery, RefreshOutcome};
pub use recorder::{Recorded, Recorder, RecorderStats};
pub use store::PgAnalytics;

/// The crate's trait, for one `use analytics::prelude::*;` (its methods need it in scope).
pub mod prelude {
    pub use crate::Analytics;
}

#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("../../migrations/analytics");
}

/// The `analytics` migration set. It references no other schema: events keep user ids as
/// plain values, so analytics can be migrated (and kept) independently of the core backend.
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::MigrationSet::from_runner(
        "analytics",
        "analytics",
        &embedded::migrations::runner(),
    )
}

/// Describes this crate's metrics to the installed `metrics` recorder (their help texts in
/// Prometheus). Call once, after installing the recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "analytics_recorder_buffered_bytes",
        "Bytes of analytics rows accepted and not written yet"
    );
    describe_gauge!(
        "analytics_recorder_buffer_capacity_bytes",
        "The most the recorder buffers (analytics.recorder.buffer_bytes); beyond it rows are dropped"
    );
    describe_counter!(
        "analytics_recorder_accepted_total",
        "Rows accepted into the recorder's buffer, by kind"
    );
    describe_counter!(
        "analytics_recorder_written_total",
        "Rows the recorder wrote, by kind"
    );
    describe_counter!(
        "analytics_recorder_dropped_total",
        "Rows refused because the recorder's buffer was full, by kind"
    );
    describe_counter!(
        "analytics_recorder_refused_total",
        "Rows the database refused to store (kept out of the batch, the rest written), by kind"
    );
    describe_counter!(
        "analytics_recorder_lost_total",
        "Accepted rows given up at close while the database failed"
    );
    describe_counter!(
        "analytics_recorder_failed_writes_total",
        "Recorder writes that failed and were retried"
    );
    describe_counter!(
        "analytics_series_rejected_total",
        "Metric points refused because their metric reached its series cap, by metric"
    );
    describe_histogram!(
        "analytics_daily_stats_refresh_seconds",
        metrics::Unit::Seconds,
        "Duration of daily_stats refreshes"
    );
    // Counters are exported from the start at zero, so that rates and alerts over them
    // exist before the first drop or failure.
    for kind in ["metric", "event"] {
        for name in [
            "analytics_recorder_accepted_total",
            "analytics_recorder_written_total",
            "analytics_recorder_dropped_total",
            "analytics_recorder_refused_total",
        ] {
            metrics::counter!(name, "kind" => kind).increment(0);
        }
    }
    metrics::counter!("analytics_recorder_lost_total").increment(0);
    metrics::counter!("analytics_recorder_failed_writes_total").increment(0);
}

/// `docs/analytics.md`, whose samples `cargo test -p analytics --doc` compiles.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/analytics.md")]
pub struct Guide;
