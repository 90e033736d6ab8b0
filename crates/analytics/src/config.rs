//! Settings of the recorder and of partition maintenance. Defaults suit one api-server; the
//! binary that composes the crate maps its own configuration onto these.

use std::time::Duration;

/// What `record` does when the buffer is full (the database is slow or down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the row at once and count it (`RecorderStats::dropped`,
    /// `analytics_recorder_dropped_total`): the caller is never slowed down.
    Drop,
    /// Wait up to this long for room, then drop and count.
    Wait(Duration),
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Rows (metric points and events together) waiting to be written, at most. Memory stays
    /// below this plus two batches whatever happens to the database.
    pub buffer_rows: usize,
    /// Rows written per COPY at most; a full batch is written at once.
    pub batch_rows: usize,
    /// A partial batch is written at least this often; while the database fails, writing is
    /// retried this often.
    pub flush_interval: Duration,
    pub overflow: Overflow,
    /// Series (label combinations) one metric may have; points of further series are
    /// rejected and counted (`analytics_series_rejected_total`).
    pub max_series_per_metric: u32,
    /// How long `close` keeps retrying to write what is buffered while the database fails;
    /// rows still unwritten then are counted as dropped.
    pub close_timeout: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            buffer_rows: 100_000,
            batch_rows: 10_000,
            flush_interval: Duration::from_secs(1),
            overflow: Overflow::Drop,
            max_series_per_metric: 1_000,
            close_timeout: Duration::from_secs(10),
        }
    }
}

/// Daily partitions of `analytics.metrics` and `analytics.events`.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// Days after today (UTC) that always have their partitions.
    pub days_ahead: u32,
    /// Days of data kept, today included; older partitions are dropped.
    pub retention_days: u32,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            days_ahead: 3,
            retention_days: 90,
        }
    }
}
