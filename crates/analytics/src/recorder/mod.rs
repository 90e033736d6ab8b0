//! [`Recorder`]: a cloneable handle that buffers metric points and events and never makes its
//! caller wait on the database.
//!
//! `record_*` validates the row and puts it in a bounded channel (a `try_send`: no lock held,
//! no I/O). One writer task per recorder takes rows from the channel and writes them with
//! `COPY` in batches of [`RecorderConfig::batch_rows`], when a batch is full and at least
//! every [`RecorderConfig::flush_interval`]. While the database fails, the writer keeps at
//! most one batch of each kind and stops taking rows: the channel fills, and further rows are
//! dropped and counted ([`Overflow`]) instead of growing memory; the bytes of the rows
//! accepted and not yet written are bounded too ([`RecorderConfig::buffer_bytes`]).
//! A row whose time lies outside [`RecorderConfig::accept_past`] and
//! [`RecorderConfig::accept_future`] is refused at once. A row the database still refuses (a
//! missing partition, ...) is isolated by the writer, counted as rejected and logged; the
//! rows around it are written. `flush().await` writes everything recorded before it;
//! `close().await` writes everything and stops.

mod copy;
mod series;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use db_core::Db;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Overflow, RecorderConfig};
use crate::error::AnalyticsError;
use crate::model::{Event, MetricPoint};

/// What became of one recorded row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// Buffered; the writer will write it.
    Buffered,
    /// The buffer was full: dropped and counted.
    Dropped,
}

/// Rows by fate since the recorder started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecorderStats {
    /// Accepted into the buffer.
    pub accepted: u64,
    /// Written to the database.
    pub written: u64,
    /// Refused because the buffer was full (never accepted).
    pub dropped: u64,
    /// Accepted but never written: still buffered when `close` gave up on a failing database.
    pub lost: u64,
    /// Metric points of a series past its metric's cap, and rows the database refused.
    pub rejected: u64,
    /// Writes that failed (and were retried).
    pub failed_writes: u64,
}

impl RecorderStats {
    /// Accepted rows not yet written, rejected or lost.
    pub fn pending(&self) -> u64 {
        self.accepted
            .saturating_sub(self.written + self.rejected + self.lost)
    }
}

#[derive(Default)]
struct Counters {
    /// Bytes of the rows accepted and not yet written, rejected or lost.
    buffered_bytes: AtomicU64,
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    rejected: AtomicU64,
    failed_writes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RecorderStats {
        RecorderStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed_writes: self.failed_writes.load(Ordering::Relaxed),
        }
    }
}

/// A row and its size in bytes (for the byte bound).
enum Row {
    Metric(MetricPoint, usize),
    Event(Event, usize),
}

impl Row {
    fn kind(&self) -> &'static str {
        match self {
            Row::Metric(..) => "metric",
            Row::Event(..) => "event",
        }
    }

    fn size(&self) -> usize {
        match self {
            Row::Metric(_, size) | Row::Event(_, size) => *size,
        }
    }
}

impl Counters {
    /// Rows left the buffer (written, rejected or lost): their bytes make room.
    fn release(&self, bytes: usize) {
        self.buffered_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }
}

/// The times a row may carry, from the recorder's clock.
#[derive(Debug, Clone, Copy)]
struct Window {
    past: chrono::Duration,
    future: chrono::Duration,
}

impl Window {
    fn check(&self, time: DateTime<Utc>) -> Result<(), AnalyticsError> {
        let now = Utc::now();
        let too_old = now
            .checked_sub_signed(self.past)
            .is_some_and(|oldest| time < oldest);
        let too_new = now
            .checked_add_signed(self.future)
            .is_some_and(|newest| time > newest);
        if too_old || too_new {
            return Err(crate::error::invalid(
                "time",
                format!(
                    "must be at most {} before and {} after the server's clock ({now}), got {time}",
                    humantime_serde::re::humantime::format_duration(
                        self.past.to_std().unwrap_or_default()
                    ),
                    humantime_serde::re::humantime::format_duration(
                        self.future.to_std().unwrap_or_default()
                    ),
                ),
            ));
        }
        Ok(())
    }
}

/// A batch's invalid row, named by its place in the batch.
fn at_row(index: usize, error: AnalyticsError) -> AnalyticsError {
    match error {
        AnalyticsError::InvalidField { field, reason } => AnalyticsError::InvalidField {
            field,
            reason: format!("row {index}: {reason}"),
        },
        other => other,
    }
}

enum Control {
    Flush(oneshot::Sender<Result<(), AnalyticsError>>),
    Close(oneshot::Sender<()>),
}

/// The buffered writer of metrics and events; see the module documentation. Clones share one
/// buffer and one writer task; the writer writes what is left and stops when `close` is
/// called or the last clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    rows: mpsc::Sender<Row>,
    control: mpsc::Sender<Control>,
    overflow: Overflow,
    buffer_bytes: u64,
    window: Window,
    counters: Arc<Counters>,
}

impl Recorder {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(db: &Db, config: RecorderConfig) -> Self {
        let (rows, rows_receiver) = mpsc::channel(config.buffer_rows.max(1));
        let (control, control_receiver) = mpsc::channel(16);
        let counters = Arc::new(Counters::default());
        let overflow = config.overflow;
        let buffer_bytes = config.buffer_bytes as u64;
        let window = Window {
            past: chrono::Duration::from_std(config.accept_past).unwrap_or(chrono::Duration::MAX),
            future: chrono::Duration::from_std(config.accept_future)
                .unwrap_or(chrono::Duration::MAX),
        };
        tokio::spawn(
            writer::Writer::new(
                db,
                config,
                counters.clone(),
                rows_receiver,
                control_receiver,
            )
            .run(),
        );
        Self {
            rows,
            control,
            overflow,
            buffer_bytes,
            window,
            counters,
        }
    }

    fn check_metric(&self, point: &MetricPoint) -> Result<usize, AnalyticsError> {
        let size = point.checked_size()?;
        self.window.check(point.time)?;
        Ok(size)
    }

    fn check_event(&self, event: &Event) -> Result<usize, AnalyticsError> {
        let size = event.checked_size()?;
        self.window.check(event.time)?;
        Ok(size)
    }

    /// Records a metric point. Refuses an invalid one with [`AnalyticsError::InvalidField`].
    pub async fn record_metric(&self, point: MetricPoint) -> Result<Recorded, AnalyticsError> {
        let size = self.check_metric(&point)?;
        self.submit(Row::Metric(point, size)).await
    }

    /// Records an event. Refuses an invalid one with [`AnalyticsError::InvalidField`].
    pub async fn record_event(&self, event: Event) -> Result<Recorded, AnalyticsError> {
        let size = self.check_event(&event)?;
        self.submit(Row::Event(event, size)).await
    }

    /// Records every point, or none when one is invalid (the error names the first, and its
    /// place: `row 3: ...`, from 0).
    pub async fn record_metrics(
        &self,
        points: Vec<MetricPoint>,
    ) -> Result<Vec<Recorded>, AnalyticsError> {
        self.record_all(points, Self::check_metric, Row::Metric)
            .await
    }

    /// Records every event, or none when one is invalid (the error names the first, and its
    /// place: `row 3: ...`, from 0).
    pub async fn record_events(&self, events: Vec<Event>) -> Result<Vec<Recorded>, AnalyticsError> {
        self.record_all(events, Self::check_event, Row::Event).await
    }

    /// Checks every item first, then submits each as `row` makes it.
    async fn record_all<T>(
        &self,
        items: Vec<T>,
        check: fn(&Self, &T) -> Result<usize, AnalyticsError>,
        row: fn(T, usize) -> Row,
    ) -> Result<Vec<Recorded>, AnalyticsError> {
        let sizes = items
            .iter()
            .enumerate()
            .map(|(index, item)| check(self, item).map_err(|error| at_row(index, error)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, size) in items.into_iter().zip(sizes) {
            outcomes.push(self.submit(row(item, size)).await?);
        }
        Ok(outcomes)
    }

    /// Takes `size` bytes of the byte bound; `false` (nothing taken) when they do not fit.
    fn reserve(&self, size: usize) -> bool {
        let size = size as u64;
        self.counters
            .buffered_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + size <= self.buffer_bytes).then_some(held + size)
            })
            .is_ok()
    }

    async fn submit(&self, row: Row) -> Result<Recorded, AnalyticsError> {
        let kind = row.kind();
        let size = row.size();
        if !self.reserve(size) {
            return Ok(self.dropped(kind));
        }
        let refused = match self.rows.try_send(row) {
            Ok(()) => return Ok(self.accepted(kind)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.release(size);
                return Err(AnalyticsError::Closed);
            }
            Err(mpsc::error::TrySendError::Full(row)) => row,
        };
        if let Overflow::Wait(patience) = self.overflow {
            match self.rows.send_timeout(refused, patience).await {
                Ok(()) => return Ok(self.accepted(kind)),
                Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                    self.counters.release(size);
                    return Err(AnalyticsError::Closed);
                }
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {}
            }
        }
        self.counters.release(size);
        Ok(self.dropped(kind))
    }

    fn dropped(&self, kind: &'static str) -> Recorded {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("analytics_recorder_dropped_total", "kind" => kind).increment(1);
        Recorded::Dropped
    }

    fn accepted(&self, kind: &'static str) -> Recorded {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("analytics_recorder_accepted_total", "kind" => kind).increment(1);
        Recorded::Buffered
    }

    /// Writes every row recorded before this call. On a database failure the rows stay
    /// buffered (and are retried) and the failure is returned.
    pub async fn flush(&self) -> Result<(), AnalyticsError> {
        let (reply, done) = oneshot::channel();
        self.control
            .send(Control::Flush(reply))
            .await
            .map_err(|_| AnalyticsError::Closed)?;
        done.await.map_err(|_| AnalyticsError::Closed)?
    }

    /// Stops accepting rows, writes every buffered row (retrying a failing database for up to
    /// [`RecorderConfig::close_timeout`], after which what is left is counted as lost) and
    /// stops the writer. Returns the final counts. Closing twice is harmless.
    pub async fn close(&self) -> RecorderStats {
        let (reply, done) = oneshot::channel();
        if self.control.send(Control::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
        self.stats()
    }

    pub fn stats(&self) -> RecorderStats {
        self.counters.snapshot()
    }

    /// Bytes accepted and not written yet, and the most the buffer holds
    /// ([`RecorderConfig::buffer_bytes`]): a recorder near its bound drops what comes next.
    pub fn buffered_bytes(&self) -> (u64, u64) {
        (
            self.counters.buffered_bytes.load(Ordering::Relaxed),
            self.buffer_bytes,
        )
    }

    /// Sets `analytics_recorder_buffered_bytes` and `analytics_recorder_buffer_capacity_bytes`
    /// (a host calls it when its metrics are scraped).
    pub fn record_gauges(&self) {
        let (buffered, capacity) = self.buffered_bytes();
        metrics::gauge!("analytics_recorder_buffered_bytes").set(buffered as f64);
        metrics::gauge!("analytics_recorder_buffer_capacity_bytes").set(capacity as f64);
    }

    /// Whether the recorder was closed (it accepts nothing more).
    pub fn is_closed(&self) -> bool {
        self.rows.is_closed()
    }
}
