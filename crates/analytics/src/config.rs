//! Settings of the recorder and of partition maintenance. Defaults suit one api-server; a
//! binary embeds them in its own configuration (they deserialise, every field optional) and
//! calls their `validate()` before starting.

use std::time::Duration;

use db_core::settings::{InvalidSetting, at_least_one, positive_duration};
use serde::{Deserialize, Serialize};

/// What `record` does when the buffer is full (the database is slow or down): `"drop"`, or
/// `{ wait = "50ms" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Drop the row at once and count it (`RecorderStats::dropped`,
    /// `analytics_recorder_dropped_total`): the caller is never slowed down.
    Drop,
    /// Wait up to this long for room, then drop and count.
    Wait(#[serde(with = "humantime_serde")] Duration),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Rows (metric points and events together) waiting to be written, at most. Memory stays
    /// below this plus two batches whatever happens to the database.
    pub buffer_rows: usize,
    /// Bytes of rows (their text: names, labels, properties) accepted and not yet written, at
    /// most: a row past it is treated as one past `buffer_rows` (see `overflow`).
    pub buffer_bytes: usize,
    /// How far before the recorder's clock a row's `time` may be. An older one is refused
    /// (`InvalidField` naming `time`): keep it within `partitions.retention_days`, which has
    /// no partition for older days.
    #[serde(with = "humantime_serde")]
    pub accept_past: Duration,
    /// How far after the recorder's clock a row's `time` may be (clocks differ a little);
    /// keep it within `partitions.days_ahead`.
    #[serde(with = "humantime_serde")]
    pub accept_future: Duration,
    /// Rows written per COPY at most; a full batch is written at once.
    pub batch_rows: usize,
    /// A partial batch is written at least this often; while the database fails, writing is
    /// retried this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub overflow: Overflow,
    /// Series (label combinations) one metric may have; points of further series are
    /// rejected and counted (`analytics_series_rejected_total`).
    pub max_series_per_metric: u32,
    /// How long `close` keeps retrying to write what is buffered while the database fails;
    /// rows still unwritten then are counted as dropped.
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            buffer_rows: 100_000,
            buffer_bytes: 64 * 1024 * 1024,
            accept_past: Duration::from_secs(7 * 24 * 3600),
            accept_future: Duration::from_secs(300),
            batch_rows: 10_000,
            flush_interval: Duration::from_secs(1),
            overflow: Overflow::Drop,
            max_series_per_metric: 1_000,
            close_timeout: Duration::from_secs(10),
        }
    }
}

/// Daily partitions of `analytics.metrics` and `analytics.events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl RecorderConfig {
    /// Refuses a recorder that could hold nothing or never write.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        at_least_one("buffer_rows", self.buffer_rows as u64)?;
        if self.buffer_bytes < crate::model::MAX_ROW_BYTES {
            // A smaller bound would drop every large event, always.
            return Err(InvalidSetting::new(
                "buffer_bytes",
                "must hold the largest row (the properties' 64 KiB and the rest: 128 KiB)",
            ));
        }
        at_least_one("batch_rows", self.batch_rows as u64)?;
        positive_duration("flush_interval", self.flush_interval)?;
        at_least_one(
            "max_series_per_metric",
            u64::from(self.max_series_per_metric),
        )
    }
}

impl PartitionConfig {
    /// Refuses a retention of zero days, which would drop today's partition.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        at_least_one("retention_days", u64::from(self.retention_days))
    }
}
