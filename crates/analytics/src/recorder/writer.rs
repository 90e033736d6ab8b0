//! The recorder's writer task: takes rows from the channel, writes them with COPY in batches,
//! and holds no more than a batch of each kind while the database fails. A batch the
//! database refuses for its data (not for the connection) is halved until the refused row is
//! alone; that row is counted and dropped, every other row is written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use db_core::Db;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::copy::{COPY_EVENTS, COPY_METRICS, push_event, push_metric};
use super::series::SeriesCache;
use super::{Control, Counters, Row};
use crate::config::RecorderConfig;
use crate::error::AnalyticsError;
use crate::model::{Event, MetricPoint};

pub(crate) struct Writer {
    options: PgConnectOptions,
    /// Its own connection (not a pooled one): COPY holds it for the whole batch. A COPY the
    /// server refused leaves it ready for the next statement; after any other failure it is
    /// closed and opened anew.
    connection: Option<PgConnection>,
    config: RecorderConfig,
    counters: Arc<Counters>,
    rows: mpsc::Receiver<Row>,
    control: mpsc::Receiver<Control>,
    metrics: Vec<MetricPoint>,
    /// The bytes of each row of `metrics` (and of `events`), released when it leaves.
    metric_sizes: Vec<usize>,
    events: Vec<Event>,
    event_sizes: Vec<usize>,
    series: SeriesCache,
    /// When the last failure was logged, so that a database down for an hour logs once a
    /// minute, not once a second.
    last_failure_logged: Option<Instant>,
    /// The same for rows the database refused.
    last_refusal_logged: Option<Instant>,
}

/// How far a COPY of a batch's rows went: the first `done` rows were written or refused.
#[derive(Default)]
struct Copied {
    done: usize,
    written: u64,
    refused: u64,
    /// What stopped it before the end (the connection, not the data): retried later.
    failure: Option<AnalyticsError>,
}

/// Whether the database refused the rows themselves (a value out of range, a time with no
/// partition, a constraint): SQLSTATE classes 22 and 23. Retrying such a batch fails again.
fn refuses_data(error: &AnalyticsError) -> bool {
    match error {
        AnalyticsError::Db(error) => error
            .sqlstate()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

impl Writer {
    pub(crate) fn new(
        db: &Db,
        config: RecorderConfig,
        counters: Arc<Counters>,
        rows: mpsc::Receiver<Row>,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        Self {
            // A session: its statements and COPYs run outside transactions.
            options: db.session_options().clone(),
            connection: None,
            config,
            counters,
            rows,
            control,
            metrics: Vec::new(),
            metric_sizes: Vec::new(),
            events: Vec::new(),
            event_sizes: Vec::new(),
            series: SeriesCache::default(),
            last_failure_logged: None,
            last_refusal_logged: None,
        }
    }

    fn batch(&self) -> usize {
        self.config.batch_rows.max(1)
    }

    /// Whether the writer may take more rows: not while a full batch waits to be written.
    fn has_room(&self) -> bool {
        self.metrics.len() < self.batch() && self.events.len() < self.batch()
    }

    fn pending(&self) -> usize {
        self.metrics.len() + self.events.len()
    }

    fn push(&mut self, row: Row) {
        match row {
            Row::Metric(point, size) => {
                self.metrics.push(point);
                self.metric_sizes.push(size);
            }
            Row::Event(event, size) => {
                self.events.push(event);
                self.event_sizes.push(size);
            }
        }
    }

    /// The first `count` metric points left the writer (written or rejected).
    fn drain_metrics(&mut self, count: usize) {
        self.metrics.drain(..count);
        self.counters
            .release(self.metric_sizes.drain(..count).sum::<usize>());
    }

    fn drain_events(&mut self, count: usize) {
        self.events.drain(..count);
        self.counters
            .release(self.event_sizes.drain(..count).sum::<usize>());
    }

    pub(crate) async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.config.flush_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut inbox = Vec::with_capacity(self.batch());
        loop {
            let room = self.has_room();
            let batch = self.batch();
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(Control::Flush(reply)) => {
                        self.take_waiting_rows();
                        let result = self.write_all().await;
                        let _ = reply.send(result);
                    }
                    Some(Control::Close(reply)) => {
                        self.finish().await;
                        let _ = reply.send(());
                        return;
                    }
                    // Every handle is gone.
                    None => {
                        self.finish().await;
                        return;
                    }
                },
                received = self.rows.recv_many(&mut inbox, batch), if room => {
                    if received == 0 {
                        self.finish().await;
                        return;
                    }
                    for row in inbox.drain(..) {
                        self.push(row);
                    }
                    if !self.has_room() {
                        let _ = self.write_all().await;
                    }
                }
                _ = ticks.tick() => {
                    if self.pending() > 0 {
                        let _ = self.write_all().await;
                    }
                }
            }
        }
    }

    /// Moves every row already in the channel into the batches (a flush covers every row
    /// recorded before it was asked for).
    fn take_waiting_rows(&mut self) {
        while let Ok(row) = self.rows.try_recv() {
            self.push(row);
        }
    }

    /// Stops accepting rows, takes what the channel holds, and writes it all, retrying until
    /// `close_timeout`; what is still unwritten then is counted as lost.
    async fn finish(&mut self) {
        self.rows.close();
        while let Some(row) = self.rows.recv().await {
            self.push(row);
        }
        let deadline = Instant::now() + self.config.close_timeout;
        while self.write_all().await.is_err() {
            let now = Instant::now();
            if now >= deadline {
                let lost = self.pending() as u64;
                self.counters.lost.fetch_add(lost, Ordering::Relaxed);
                metrics::counter!("analytics_recorder_lost_total").increment(lost);
                tracing::error!(
                    rows = lost,
                    "analytics recorder closed with rows it could not write"
                );
                self.drain_metrics(self.metrics.len());
                self.drain_events(self.events.len());
                break;
            }
            tokio::time::sleep(
                (deadline - now).min(self.config.flush_interval.min(Duration::from_secs(1))),
            )
            .await;
        }
    }

    /// Writes every pending row, a batch per COPY. On failure what was not written stays
    /// pending.
    async fn write_all(&mut self) -> Result<(), AnalyticsError> {
        let result = self.write_batches().await;
        if let Err(error) = &result {
            // The connection may be mid-COPY or gone: start afresh next time.
            self.connection = None;
            self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("analytics_recorder_failed_writes_total").increment(1);
            let quiet = self
                .last_failure_logged
                .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
            if !quiet {
                tracing::warn!(%error, pending = self.pending(), "analytics recorder cannot write; retrying");
                self.last_failure_logged = Some(Instant::now());
            }
        }
        result
    }

    async fn write_batches(&mut self) -> Result<(), AnalyticsError> {
        while !self.metrics.is_empty() {
            self.write_metrics().await?;
        }
        while !self.events.is_empty() {
            self.write_events().await?;
        }
        Ok(())
    }

    async fn connection(&mut self) -> Result<&mut PgConnection, AnalyticsError> {
        if self.connection.is_none() {
            self.connection = Some(self.options.connect().await?);
        }
        match self.connection.as_mut() {
            Some(connection) => Ok(connection),
            None => Err(AnalyticsError::Flush("no connection".into())),
        }
    }

    async fn write_metrics(&mut self) -> Result<(), AnalyticsError> {
        let count = self.metrics.len().min(self.batch());
        let max_series = self.config.max_series_per_metric;
        self.connection().await?;
        let Some(connection) = self.connection.as_mut() else {
            return Err(AnalyticsError::Flush("no connection".into()));
        };
        let ids = self
            .series
            .resolve(connection, &self.metrics[..count], max_series)
            .await?;
        // A point of a series past its metric's cap has no id and no line.
        let lines: Vec<Option<String>> = self.metrics[..count]
            .iter()
            .zip(&ids)
            .map(|(point, id)| {
                id.map(|id| {
                    let mut line = String::with_capacity(48);
                    push_metric(&mut line, id, &point.time, point.value);
                    line
                })
            })
            .collect();
        let copied = self.copy_rows(COPY_METRICS, "metric", &lines).await;
        for point in self.metrics[..copied.done]
            .iter()
            .zip(&lines)
            .filter(|(_, line)| line.is_none())
            .map(|(point, _)| point)
        {
            metrics::counter!("analytics_series_rejected_total", "metric" => point.name.clone())
                .increment(1);
        }
        let capped = lines[..copied.done]
            .iter()
            .filter(|line| line.is_none())
            .count() as u64;
        self.drain_metrics(copied.done);
        self.count(copied.written, copied.refused + capped, "metric");
        copied.failure.map_or(Ok(()), Err)
    }

    async fn write_events(&mut self) -> Result<(), AnalyticsError> {
        let count = self.events.len().min(self.batch());
        let lines: Vec<Option<String>> = self.events[..count]
            .iter()
            .map(|event| {
                let mut line = String::with_capacity(200);
                push_event(&mut line, event);
                Some(line)
            })
            .collect();
        let copied = self.copy_rows(COPY_EVENTS, "event", &lines).await;
        self.drain_events(copied.done);
        self.count(copied.written, copied.refused, "event");
        copied.failure.map_or(Ok(()), Err)
    }

    fn count(&self, written: u64, rejected: u64, kind: &'static str) {
        self.counters.written.fetch_add(written, Ordering::Relaxed);
        self.counters
            .rejected
            .fetch_add(rejected, Ordering::Relaxed);
        metrics::counter!("analytics_recorder_written_total", "kind" => kind).increment(written);
    }

    /// Writes `lines` (`None`: a row with nothing to write) with COPY, all at once if the
    /// database takes them. When it refuses their data, the rows are halved until the refused
    /// one is alone; it is counted, logged and skipped, and the rest goes on in chunks that
    /// double with each success (a batch of bad rows costs a COPY a row, not a resend of the
    /// rest each time). Stops at the first failure of another kind, reporting how far it got.
    async fn copy_rows(
        &mut self,
        statement: &'static str,
        kind: &'static str,
        lines: &[Option<String>],
    ) -> Copied {
        let mut copied = Copied::default();
        let mut chunk = lines.len();
        while copied.done < lines.len() {
            let end = (copied.done + chunk.max(1)).min(lines.len());
            let rows = &lines[copied.done..end];
            let present = rows.iter().flatten().count() as u64;
            if present == 0 {
                copied.done = end;
                continue;
            }
            let text: String = rows.iter().flatten().map(String::as_str).collect();
            let result = match self.connection().await {
                Ok(connection) => copy(connection, statement, text).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(_) => {
                    copied.written += present;
                    copied.done = end;
                    chunk = chunk.saturating_mul(2);
                }
                // The server answered the COPY with its error and is ready for the next
                // statement: the connection is kept.
                Err(error) if refuses_data(&error) => {
                    if end - copied.done > 1 {
                        chunk = (end - copied.done) / 2;
                        continue;
                    }
                    copied.refused += 1;
                    copied.done = end;
                    metrics::counter!("analytics_recorder_refused_total", "kind" => kind)
                        .increment(1);
                    let quiet = self
                        .last_refusal_logged
                        .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
                    if !quiet {
                        tracing::warn!(%error, kind, "the database refused an analytics row; it is dropped (analytics_recorder_refused_total counts them)");
                        self.last_refusal_logged = Some(Instant::now());
                    }
                }
                Err(error) => {
                    copied.failure = Some(error);
                    break;
                }
            }
        }
        copied
    }
}

/// One COPY of `text` (whole rows in text format), in its own transaction.
async fn copy(
    connection: &mut PgConnection,
    statement: &'static str,
    text: String,
) -> Result<u64, AnalyticsError> {
    let mut copy_in = connection.copy_in_raw(statement).await?;
    if let Err(error) = copy_in.send(text.into_bytes()).await {
        let _ = copy_in.abort("the client failed while sending").await;
        return Err(error.into());
    }
    Ok(copy_in.finish().await?)
}
