//! The analytics crate against references measured in the same run on the same machine:
//!
//! 1. `recorder_metrics`: narrow metric points (100 series) through the `Recorder`, from two
//!    producer tasks until `close` has written them all, against one `COPY` (the COPY protocol
//!    directly, text format) of the same rows into the same table;
//! 2. `recorder_events`: the same with events carrying ~300 bytes of JSON properties;
//! 3. `record_p99`: the caller's `record_event` latency while the recorder writes, against
//!    50 microseconds;
//! 4. `bucket_query_24h`: 1-minute buckets over 24 hours of one metric (10 series) in a table
//!    of 10 million points, p95 against 100 ms;
//! 5. `daily_stats_refresh`: refreshing the rollup over 10 million events, against 60 s, with
//!    the readers' p99 during the refresh beside their p99 before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use analytics::{
    Analytics, Event, MetricPoint, MetricQuery, Overflow, PartitionConfig, PgAnalytics, Recorded,
    Recorder, RecorderConfig,
};
use anyhow::Context;
use chrono::{DateTime, Days, Utc};
use db_core::sqlx::{self, Connection, PgConnection};

use crate::cluster::BenchCluster;
use crate::compare::{median, record, wanted};
use crate::load;
use crate::report::{Latency, Measurement, progress};

pub struct Options {
    pub rounds: usize,
    pub seconds: u64,
    /// Rows of each ingestion scenario.
    pub rows: usize,
    /// Rows of the query and refresh scenarios.
    pub big_rows: usize,
    pub only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        wanted(&self.only, scenario)
    }
}

const AREA: &str = "analytics";
const SERIES: usize = 100;
const METRICS: usize = 10;
const PRODUCERS: usize = 2;
const RECORD_P99_TARGET_US: f64 = 50.0;
const QUERY_P95_TARGET_MS: f64 = 100.0;
const REFRESH_TARGET_S: f64 = 60.0;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Measurement>> {
    let bench = BenchCluster::start(vec![analytics::migration_set()], 12).await?;
    let analytics = PgAnalytics::new(bench.db.clone(), PartitionConfig::default());
    let today = Utc::now().date_naive();
    let month_ago = today
        .checked_sub_days(Days::new(31))
        .context("date out of range")?;
    // A month back and the days ahead: every row of the scenarios finds its partition.
    analytics.create_partitions(month_ago, 31).await?;
    analytics.maintain_partitions().await?;
    let mut measurements = Vec::new();

    if options.wants("recorder_metrics") {
        ingest_metrics(&bench, options, &mut measurements).await?;
    }
    if options.wants("recorder_events") {
        ingest_events(&bench, options, &mut measurements).await?;
    }
    if options.wants("record_p99") {
        record_latency(&bench, options, &mut measurements).await?;
    }
    if options.wants("bucket_query") {
        bucket_query(&bench, &analytics, options, &mut measurements).await?;
    }
    if options.wants("daily_stats_refresh") {
        refresh(&bench, &analytics, options, &mut measurements).await?;
    }
    Ok(measurements)
}

/// A recorder that waits for room rather than dropping: the ingestion scenarios measure the
/// rate it sustains, every row written.
fn backpressured(bench: &BenchCluster) -> Recorder {
    Recorder::start(
        &bench.db,
        RecorderConfig {
            overflow: Overflow::Wait(Duration::from_secs(60)),
            ..RecorderConfig::default()
        },
    )
}

fn point(n: usize, now: DateTime<Utc>) -> MetricPoint {
    let series = n % SERIES;
    MetricPoint::new(
        format!("bench_metric_{}", series % METRICS),
        (n % 1_000) as f64,
    )
    .label("instance", (series / METRICS).to_string())
    .at(now - chrono::Duration::milliseconds((n % 3_600_000) as i64))
}

fn event(n: usize, now: DateTime<Utc>) -> Event {
    Event::new(format!("kind_{}", n % 20))
        .user(uuid::Uuid::from_u128(n as u128 % 100_000))
        .session(uuid::Uuid::from_u128(n as u128 % 1_000_000))
        .properties(serde_json::json!({
            "order_id": uuid::Uuid::from_u128(n as u128).to_string(),
            "restaurant": "Trattoria da Bench, Via Roma 12",
            "items": [{"sku": "pizza-margherita", "qty": 2}, {"sku": "tiramisu", "qty": 1}],
            "total_cents": 2_350 + n % 1_000,
            "channel": if n.is_multiple_of(2) { "web" } else { "mobile" },
            "coupon": null,
            "promo": "AUTUMN-2026",
            "currency": "EUR",
            "note": "ring twice, leave at the door",
        }))
        .at(now - chrono::Duration::milliseconds((n % 3_600_000) as i64))
}

/// Empties both tables (between rounds: each side writes into the same empty table).
async fn truncate(bench: &BenchCluster) -> anyhow::Result<()> {
    sqlx::raw_sql("TRUNCATE analytics.metrics, analytics.events")
        .execute(bench.db.primary())
        .await?;
    sqlx::raw_sql("CHECKPOINT")
        .execute(bench.db.primary())
        .await?;
    Ok(())
}

/// Alternates one COPY of `text` with `ours` (each into the emptied table), `rounds` times;
/// returns the median rates, ours then COPY's.
async fn alternate_with_copy<F, Fut>(
    bench: &BenchCluster,
    options: &Options,
    statement: &'static str,
    text: &str,
    ours: F,
) -> anyhow::Result<(f64, f64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let (mut our_rates, mut copy_rates) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds.max(1) {
        truncate(bench).await?;
        let reference = copy_reference(bench, statement, text, options.rows).await?;
        truncate(bench).await?;
        let rate = ours().await?;
        progress(&format!(
            "  round {round}: COPY {reference:.0} rows/s, recorder {rate:.0} rows/s"
        ));
        copy_rates.push(reference);
        our_rates.push(rate);
    }
    Ok((median(our_rates), median(copy_rates)))
}

/// One COPY of `text` into `statement`'s table; returns the rows per second.
async fn copy_reference(
    bench: &BenchCluster,
    statement: &'static str,
    text: &str,
    rows: usize,
) -> anyhow::Result<f64> {
    let mut connection =
        PgConnection::connect_with(&bench.cluster.connect_options(crate::cluster::DATABASE))
            .await?;
    let started = Instant::now();
    let mut copy = connection.copy_in_raw(statement).await?;
    copy.send(text.as_bytes()).await?;
    let copied = copy.finish().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        copied as usize == rows,
        "COPY wrote {copied} of {rows} rows"
    );
    connection.close().await?;
    Ok(rate)
}

/// Records `rows` from `PRODUCERS` tasks and closes the recorder; returns rows per second.
async fn through_recorder<T: Send + 'static>(
    bench: &BenchCluster,
    rows: Vec<T>,
    record_one: fn(&Recorder, T) -> futures_record::RecordFuture<'_>,
) -> anyhow::Result<f64> {
    let count = rows.len();
    let recorder = backpressured(bench);
    let chunk = count.div_ceil(PRODUCERS);
    let mut parts: Vec<Vec<T>> = Vec::new();
    let mut rows = rows;
    while !rows.is_empty() {
        let rest = rows.split_off(chunk.min(rows.len()));
        parts.push(rows);
        rows = rest;
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for part in parts {
        let recorder = recorder.clone();
        producers.push(tokio::spawn(async move {
            let mut dropped = 0_u64;
            for row in part {
                if record_one(&recorder, row).await? == Recorded::Dropped {
                    dropped += 1;
                }
            }
            Ok::<_, analytics::AnalyticsError>(dropped)
        }));
    }
    for producer in producers {
        let dropped = producer.await??;
        anyhow::ensure!(dropped == 0, "the recorder dropped {dropped} rows");
    }
    let stats = recorder.close().await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        stats.written as usize == count && stats.lost == 0,
        "the recorder wrote {} of {count} rows: {stats:?}",
        stats.written
    );
    Ok(rate)
}

/// Boxed futures of one `record_*` call, so both kinds share `through_recorder`.
mod futures_record {
    use std::future::Future;
    use std::pin::Pin;

    use analytics::{AnalyticsError, Recorded};

    pub type RecordFuture<'a> =
        Pin<Box<dyn Future<Output = Result<Recorded, AnalyticsError>> + Send + 'a>>;
}

fn record_metric(recorder: &Recorder, point: MetricPoint) -> futures_record::RecordFuture<'_> {
    Box::pin(recorder.record_metric(point))
}

fn record_event(recorder: &Recorder, event: Event) -> futures_record::RecordFuture<'_> {
    Box::pin(recorder.record_event(event))
}

async fn ingest_metrics(
    bench: &BenchCluster,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress(&format!(
        "scenario 1: {} metric points, recorder against COPY",
        options.rows
    ));
    let now = Utc::now();
    let points: Vec<MetricPoint> = (0..options.rows).map(|n| point(n, now)).collect();
    // The series exist before either side runs: COPY needs their ids.
    through_recorder(bench, points[..SERIES].to_vec(), record_metric).await?;
    let ids: std::collections::HashMap<(String, String), i64> =
        sqlx::query_as::<_, (String, String, i64)>(
            "SELECT name, labels->>'instance', id FROM analytics.metric_series",
        )
        .fetch_all(bench.db.primary())
        .await?
        .into_iter()
        .map(|(name, instance, id)| ((name, instance), id))
        .collect();
    let mut text = String::with_capacity(options.rows * 48);
    for point in &points {
        let id = ids
            .get(&(point.name.clone(), point.labels["instance"].clone()))
            .context("a series without an id")?;
        text.push_str(&format!(
            "{id}\t{}\t{:?}\n",
            point
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            point.value
        ));
    }
    let (ours, theirs) = alternate_with_copy(
        bench,
        options,
        "COPY analytics.metrics (series_id, time, value) FROM STDIN",
        &text,
        || through_recorder(bench, points.clone(), record_metric),
    )
    .await?;
    record(
        measurements,
        Measurement::new(AREA, "recorder_metrics", "rows_per_s", ours)
            .against("copy_metrics", theirs, 0.5)
            .with("rows", options.rows as u64)
            .with("series", SERIES as u64)
            .with("producers", PRODUCERS as u64),
    );
    Ok(())
}

async fn ingest_events(
    bench: &BenchCluster,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress(&format!(
        "scenario 2: {} events with ~300-byte properties, recorder against COPY",
        options.rows
    ));
    let now = Utc::now();
    let events: Vec<Event> = (0..options.rows).map(|n| event(n, now)).collect();
    let properties_bytes = events[0].properties.to_string().len();
    let mut text = String::with_capacity(options.rows * 420);
    for event in &events {
        let properties = event.properties.to_string().replace('\\', "\\\\");
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{properties}\n",
            event
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            event.kind,
            event
                .user_id
                .map_or_else(|| "\\N".to_owned(), |id| id.to_string()),
            event
                .session_id
                .map_or_else(|| "\\N".to_owned(), |id| id.to_string()),
        ));
    }
    let (ours, theirs) = alternate_with_copy(
        bench,
        options,
        "COPY analytics.events (time, kind, user_id, session_id, properties) FROM STDIN",
        &text,
        || through_recorder(bench, events.clone(), record_event),
    )
    .await?;
    record(
        measurements,
        Measurement::new(AREA, "recorder_events", "rows_per_s", ours)
            .against("copy_events", theirs, 0.5)
            .with("rows", options.rows as u64)
            .with("properties_bytes", properties_bytes as u64)
            .with("producers", PRODUCERS as u64),
    );
    truncate(bench).await?;
    Ok(())
}

/// Scenario 3: each `record_event` call timed, four tasks recording 10,000 events per second
/// each while the writer writes (the default drop-and-count recorder, as a service runs it).
async fn record_latency(
    bench: &BenchCluster,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress("scenario 3: latency of record_event while the recorder writes");
    let recorder = Recorder::start(&bench.db, RecorderConfig::default());
    let deadline = Instant::now() + Duration::from_secs(options.seconds.max(1));
    let mut tasks = Vec::new();
    for task in 0..4_usize {
        let recorder = recorder.clone();
        tasks.push(tokio::spawn(async move {
            let now = Utc::now();
            let mut micros = Vec::new();
            let mut n = task * 10_000_000;
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            while Instant::now() < deadline {
                ticks.tick().await;
                for _ in 0..100 {
                    let event = event(n, now);
                    n += 1;
                    let started = Instant::now();
                    let outcome = recorder.record_event(event).await;
                    let took = started.elapsed();
                    if outcome.is_ok() {
                        micros.push(took.as_nanos() as f64 / 1_000.0);
                    }
                }
            }
            micros
        }));
    }
    let mut micros = Vec::new();
    for task in tasks {
        micros.extend(task.await?);
    }
    let stats = recorder.close().await;
    micros.sort_by(f64::total_cmp);
    let at = |fraction: f64| micros[((micros.len() - 1) as f64 * fraction).round() as usize];
    anyhow::ensure!(!micros.is_empty(), "no call was timed");
    let (p50, p99) = (at(0.5), at(0.99));
    record(
        measurements,
        Measurement::new(AREA, "record_p99", "p99_us", p99)
            .against("target_p99_us", RECORD_P99_TARGET_US, 1.0)
            .lower_is_better()
            .with("p50_us", (p50 * 1000.0).round() / 1000.0)
            .with("calls", micros.len() as u64)
            .with("dropped", stats.dropped)
            .with("written", stats.written),
    );
    truncate(bench).await?;
    Ok(())
}

/// Scenario 4: 1-minute buckets over 24 hours of one metric among 10 million points.
async fn bucket_query(
    bench: &BenchCluster,
    analytics: &PgAnalytics,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress(&format!(
        "scenario 4: writing {} metric points over 7 days",
        options.big_rows
    ));
    let per_series = (options.big_rows / SERIES) as i64;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO analytics.metric_series (name, labels)
         SELECT 'big_metric_' || (s % $1), jsonb_build_object('instance', (s / $1)::text)
           FROM generate_series(0, $2 - 1) s",
    )
    .bind(METRICS as i32)
    .bind(SERIES as i32)
    .execute(bench.db.primary())
    .await?;
    let series: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM analytics.metric_series WHERE name LIKE 'big_metric_%'")
            .fetch_all(bench.db.primary())
            .await?;
    for (done, id) in series.iter().enumerate() {
        // Evenly over the last 7 days, values a smooth wave with noise.
        sqlx::query(
            "INSERT INTO analytics.metrics (series_id, time, value)
             SELECT $1, now() - (n::float8 / $2) * interval '7 days',
                    100 + 50 * sin(n / 500.0) + random() * 10
               FROM generate_series(1, $2) n",
        )
        .bind(id)
        .bind(per_series)
        .execute(bench.db.primary())
        .await?;
        if (done + 1) % 20 == 0 {
            progress(&format!(
                "  {} of {} series ({:.0} s)",
                done + 1,
                series.len(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    sqlx::raw_sql("VACUUM (ANALYZE) analytics.metrics")
        .execute(bench.db.primary())
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.metrics")
        .fetch_one(bench.db.primary())
        .await?;

    let analytics = Arc::new(analytics.clone());
    let result = load::run(1, Duration::from_secs(options.seconds), move |_| {
        let analytics = analytics.clone();
        async move {
            // A random day of the seven, a random metric: every series of it.
            let end = Utc::now() - chrono::Duration::hours(fastrand::i64(0..6 * 24));
            let query = MetricQuery {
                name: format!("big_metric_{}", fastrand::usize(..METRICS)),
                labels: Default::default(),
                from: end - chrono::Duration::hours(24),
                to: end,
                bucket: Duration::from_secs(60),
            };
            let buckets = analytics.metric_buckets(&query).await?;
            if buckets.len() == 1_440 {
                Ok(1)
            } else {
                Err(analytics::AnalyticsError::Flush(format!(
                    "{} buckets",
                    buckets.len()
                )))
            }
        }
    })
    .await;
    record(
        measurements,
        Measurement::new(AREA, "bucket_query_24h", "p95_ms", result.latency.p95_ms)
            .against("target_p95_ms", QUERY_P95_TARGET_MS, 1.0)
            .lower_is_better()
            .latency(&result.latency)
            .with("rows_in_table", total)
            .with("rows_per_query", per_series * (SERIES / METRICS) as i64 / 7)
            .with("queries", result.units)
            .with("failures", result.failures),
    );
    Ok(())
}

/// Scenario 5: refreshing `daily_stats` over 10 million events while readers query it.
async fn refresh(
    bench: &BenchCluster,
    analytics: &PgAnalytics,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress(&format!(
        "scenario 5: writing {} events over 30 days",
        options.big_rows
    ));
    let started = Instant::now();
    let chunk = 1_000_000_i64;
    let mut written = 0_i64;
    while written < options.big_rows as i64 {
        let count = chunk.min(options.big_rows as i64 - written);
        sqlx::query(
            "INSERT INTO analytics.events (time, kind, user_id, properties)
             SELECT now() - random() * interval '30 days', 'kind_' || (n % 20),
                    ('00000000-0000-0000-0000-' || lpad((n % 100000)::text, 12, '0'))::uuid,
                    '{\"channel\": \"web\"}'
               FROM generate_series($1, $2) n",
        )
        .bind(written)
        .bind(written + count - 1)
        .execute(bench.db.primary())
        .await?;
        written += count;
        progress(&format!(
            "  {written} events ({:.0} s)",
            started.elapsed().as_secs_f64()
        ));
    }
    sqlx::raw_sql("VACUUM (ANALYZE) analytics.events")
        .execute(bench.db.primary())
        .await?;
    // A first refresh fills the rollup; readers then read it before and during the second.
    analytics.refresh_daily_stats().await?;
    let today = Utc::now().date_naive();
    let month_ago = today.checked_sub_days(Days::new(30)).context("date")?;
    let read = {
        let analytics = analytics.clone();
        move |duration: Duration| {
            let analytics = analytics.clone();
            async move {
                load::run(4, duration, move |_| {
                    let analytics = analytics.clone();
                    async move {
                        analytics
                            .daily_stats(month_ago, today, None)
                            .await
                            .map(|_| 1)
                    }
                })
                .await
            }
        }
    };
    let before = read(Duration::from_secs(options.seconds)).await;
    let refreshing = Arc::new(AtomicBool::new(true));
    let readers = {
        let (read, refreshing) = (read.clone(), refreshing.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while refreshing.load(Ordering::Relaxed) {
                latencies.push(read(Duration::from_millis(500)).await.latency);
            }
            latencies
        })
    };
    let started = Instant::now();
    let outcome = analytics.refresh_daily_stats().await?;
    let took = started.elapsed().as_secs_f64();
    refreshing.store(false, Ordering::Relaxed);
    let during = readers.await?;
    let worst_p99_during = during
        .iter()
        .map(|latency: &Latency| latency.p99_ms)
        .fold(0.0, f64::max);
    record(
        measurements,
        Measurement::new(AREA, "daily_stats_refresh", "seconds", took)
            .against("target_seconds", REFRESH_TARGET_S, 1.0)
            .lower_is_better()
            .with("events", options.big_rows as u64)
            .with("outcome", format!("{outcome:?}"))
            .with("reader_p99_ms_before", before.latency.p99_ms)
            .with("reader_p99_ms_during_worst", worst_p99_during)
            .with("reads_before_per_s", before.units_per_second().round()),
    );
    Ok(())
}
