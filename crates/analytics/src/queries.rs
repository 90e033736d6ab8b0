//! What a dashboard asks of the analytics schema: [`Analytics`], implemented on PostgreSQL by
//! [`crate::PgAnalytics`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::error::AnalyticsError;
use crate::model::Labels;
use crate::partitions::PartitionReport;

/// Buckets one metric query may return at most.
pub const MAX_BUCKETS: u64 = 10_000;
/// Days one event query may span at most.
pub const MAX_DAYS: i64 = 366;

/// Aggregates of one metric over time buckets.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    pub name: String,
    /// Only series whose labels include all of these.
    pub labels: Labels,
    /// The first bucket starts here.
    pub from: DateTime<Utc>,
    /// Exclusive; the last bucket may be shorter.
    pub to: DateTime<Utc>,
    /// At least one second.
    pub bucket: Duration,
}

/// One time bucket; every bucket of the range is returned, an empty one with `count` 0 and
/// no aggregates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = MetricBucket))]
pub struct Aggregates {
    pub start: DateTime<Utc>,
    pub count: i64,
    pub sum: Option<f64>,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Interpolated percentiles (`percentile_cont`).
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// Events of one kind on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventCount {
    pub day: NaiveDate,
    pub kind: String,
    pub events: i64,
    /// Distinct users among the events that name one.
    pub unique_users: i64,
}

/// A row of the `daily_stats` rollup: the same figures as [`EventCount`], as of its last
/// refresh.
pub type DailyStat = EventCount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshOutcome {
    Refreshed {
        took_ms: u64,
    },
    /// Another instance is refreshing right now; this one did nothing.
    AlreadyRunning,
}

#[async_trait]
pub trait Analytics: Send + Sync {
    /// Count, sum, avg, min, max and p50/p95/p99 of the metric's points per bucket, every
    /// bucket of the range included.
    async fn metric_buckets(&self, query: &MetricQuery) -> Result<Vec<Aggregates>, AnalyticsError>;

    /// Events and unique users per kind and UTC day, `from` to `to` inclusive, from the raw
    /// events (current to the last flush). Days and kinds without events are absent.
    async fn event_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kind: Option<&str>,
    ) -> Result<Vec<EventCount>, AnalyticsError>;

    /// The same from the `daily_stats` rollup, as of its last refresh (cheap on any range).
    async fn daily_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kind: Option<&str>,
    ) -> Result<Vec<DailyStat>, AnalyticsError>;

    /// Recomputes `daily_stats` without blocking its readers (`REFRESH ... CONCURRENTLY`), unless
    /// another instance is doing it (an advisory lock decides). Rows that arrived late, for
    /// any day, are in the result.
    async fn refresh_daily_stats(&self) -> Result<RefreshOutcome, AnalyticsError>;

    /// Creates the coming days' partitions and drops those past retention.
    async fn maintain_partitions(&self) -> Result<PartitionReport, AnalyticsError>;
}
