//! The recorder's writer task: takes rows from the channel, writes them with COPY in batches,
//! and holds no more than a batch of each kind while the database fails.

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
    /// Its own connection (not a pooled one): COPY holds it for the whole batch, and a failed
    /// COPY leaves it in a state only closing it clears.
    connection: Option<PgConnection>,
    config: RecorderConfig,
    counters: Arc<Counters>,
    rows: mpsc::Receiver<Row>,
    control: mpsc::Receiver<Control>,
    metrics: Vec<MetricPoint>,
    events: Vec<Event>,
    series: SeriesCache,
    /// When the last failure was logged, so that a database down for an hour logs once a
    /// minute, not once a second.
    last_failure_logged: Option<Instant>,
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
            options: db.primary().connect_options().as_ref().clone(),
            connection: None,
            config,
            counters,
            rows,
            control,
            metrics: Vec::new(),
            events: Vec::new(),
            series: SeriesCache::default(),
            last_failure_logged: None,
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
            Row::Metric(point) => self.metrics.push(point),
            Row::Event(event) => self.events.push(event),
        }
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
                self.metrics.clear();
                self.events.clear();
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
        let mut text = String::with_capacity(count * 48);
        let mut rows = 0_u64;
        for (point, id) in self.metrics[..count].iter().zip(&ids) {
            match id {
                Some(id) => {
                    push_metric(&mut text, *id, &point.time, point.value);
                    rows += 1;
                }
                None => {
                    metrics::counter!("analytics_series_rejected_total", "metric" => point.name.clone())
                        .increment(1);
                }
            }
        }
        let rejected = count as u64 - rows;
        if rows > 0 {
            copy(self.connection().await?, COPY_METRICS, text).await?;
        }
        self.metrics.drain(..count);
        self.counters.written.fetch_add(rows, Ordering::Relaxed);
        self.counters
            .rejected
            .fetch_add(rejected, Ordering::Relaxed);
        metrics::counter!("analytics_recorder_written_total", "kind" => "metric").increment(rows);
        Ok(())
    }

    async fn write_events(&mut self) -> Result<(), AnalyticsError> {
        let count = self.events.len().min(self.batch());
        let mut text = String::with_capacity(count * 200);
        for event in &self.events[..count] {
            push_event(&mut text, event);
        }
        copy(self.connection().await?, COPY_EVENTS, text).await?;
        self.events.drain(..count);
        self.counters
            .written
            .fetch_add(count as u64, Ordering::Relaxed);
        metrics::counter!("analytics_recorder_written_total", "kind" => "event")
            .increment(count as u64);
        Ok(())
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
