//! [`PgAnalytics`]: the PostgreSQL implementation of [`Analytics`].

use std::time::Instant;

use async_trait::async_trait;
use chrono::{Days, NaiveDate, NaiveTime, Utc};
use db_core::Db;
use sqlx::types::Json;

use crate::config::PartitionConfig;
use crate::error::{AnalyticsError, invalid};
use crate::model::{validate_labels, validate_metric_name};
use crate::partitions::{self, PartitionReport};
use crate::queries::{
    Aggregates, Analytics, DailyStat, EventCount, MAX_BUCKETS, MAX_DAYS, MetricQuery,
    RefreshOutcome,
};

/// Analytics queries and maintenance on PostgreSQL. Cheap to clone. Recording is the
/// [`crate::Recorder`]'s.
#[derive(Clone)]
pub struct PgAnalytics {
    db: Db,
    partitions: PartitionConfig,
}

impl PgAnalytics {
    pub fn new(db: Db, partitions: PartitionConfig) -> Self {
        Self { db, partitions }
    }

    /// Creates the partitions of both tables for `days` days from `first_day` (for a backfill
    /// of past days; [`Analytics::maintain_partitions`] keeps the coming days covered).
    pub async fn create_partitions(
        &self,
        first_day: NaiveDate,
        days: u32,
    ) -> Result<u32, AnalyticsError> {
        partitions::create(&self.db, first_day, days).await
    }
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    start: chrono::DateTime<Utc>,
    count: i64,
    sum: Option<f64>,
    avg: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    percentiles: Option<Vec<f64>>,
}

/// Buckets from `$4` every `$3` microseconds until `$5` (exclusive) of the points of the
/// series of metric `$1` whose labels contain `$2`. Points are binned first (one pass over
/// the `(series_id, time)` index), then joined to the full grid so empty buckets appear.
const BUCKETS_SQL: &str = "
WITH stride AS (SELECT $3 * interval '1 microsecond' AS width),
series AS (
    SELECT id FROM analytics.metric_series WHERE name = $1 AND labels @> $2
),
binned AS (
    SELECT date_bin((SELECT width FROM stride), m.time, $4) AS start,
           count(*) AS count, sum(m.value) AS sum, avg(m.value) AS avg,
           min(m.value) AS min, max(m.value) AS max,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY m.value) AS percentiles
      FROM analytics.metrics m
     WHERE m.series_id IN (SELECT id FROM series) AND m.time >= $4 AND m.time < $5
     GROUP BY 1
)
SELECT grid.start, coalesce(binned.count, 0) AS count, binned.sum, binned.avg, binned.min,
       binned.max, binned.percentiles
  FROM generate_series($4, $5 - interval '1 microsecond', (SELECT width FROM stride)) AS grid(start)
  LEFT JOIN binned ON binned.start = grid.start
 ORDER BY grid.start";

fn day_range(
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>), AnalyticsError> {
    if to < from {
        return Err(invalid("to", "must not be before from"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(invalid(
            "to",
            format!("a range spans at most {MAX_DAYS} days"),
        ));
    }
    let start = from.and_time(NaiveTime::MIN).and_utc();
    let end = to
        .checked_add_days(Days::new(1))
        .ok_or_else(|| invalid("to", "out of range"))?
        .and_time(NaiveTime::MIN)
        .and_utc();
    Ok((start, end))
}

fn check_kind(kind: Option<&str>) -> Result<(), AnalyticsError> {
    match kind {
        Some(kind) if kind.is_empty() || kind.chars().count() > crate::model::MAX_KIND_CHARS => {
            Err(invalid("kind", "must be 1 to 100 characters"))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Analytics for PgAnalytics {
    async fn metric_buckets(&self, query: &MetricQuery) -> Result<Vec<Aggregates>, AnalyticsError> {
        validate_metric_name(&query.name)?;
        validate_labels(&query.labels)?;
        if query.to <= query.from {
            return Err(invalid("to", "must be after from"));
        }
        let width = query.bucket.as_micros();
        if width < 1_000_000 {
            return Err(invalid("bucket", "must be at least one second"));
        }
        let span = (query.to - query.from)
            .num_microseconds()
            .ok_or_else(|| invalid("to", "range too long"))?;
        let buckets = (span as u128).div_ceil(width);
        if buckets > u128::from(MAX_BUCKETS) {
            return Err(invalid(
                "bucket",
                format!("the range holds {buckets} buckets; at most {MAX_BUCKETS}"),
            ));
        }
        let mut unit = self.db.unit(self.db.read()).await?;
        let rows: Vec<BucketRow> = sqlx::query_as(BUCKETS_SQL)
            .bind(&query.name)
            .bind(Json(&query.labels))
            .bind(i64::try_from(width).unwrap_or(i64::MAX))
            .bind(query.from)
            .bind(query.to)
            .fetch_all(&mut *unit)
            .await?;
        unit.finish().await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let percentile = |index: usize| {
                    row.percentiles
                        .as_ref()
                        .and_then(|values| values.get(index).copied())
                };
                Aggregates {
                    start: row.start,
                    count: row.count,
                    sum: row.sum,
                    avg: row.avg,
                    min: row.min,
                    max: row.max,
                    p50: percentile(0),
                    p95: percentile(1),
                    p99: percentile(2),
                }
            })
            .collect())
    }

    async fn event_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kind: Option<&str>,
    ) -> Result<Vec<EventCount>, AnalyticsError> {
        let (start, end) = day_range(from, to)?;
        check_kind(kind)?;
        let mut unit = self.db.unit(self.db.read()).await?;
        let rows: Vec<(NaiveDate, String, i64, i64)> = sqlx::query_as(
            "SELECT (time AT TIME ZONE 'UTC')::date AS day, kind, count(*), count(DISTINCT user_id)
               FROM analytics.events
              WHERE time >= $1 AND time < $2 AND ($3::text IS NULL OR kind = $3)
              GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(start)
        .bind(end)
        .bind(kind)
        .fetch_all(&mut *unit)
        .await?;
        unit.finish().await?;
        Ok(rows.into_iter().map(event_count).collect())
    }

    async fn daily_stats(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        kind: Option<&str>,
    ) -> Result<Vec<DailyStat>, AnalyticsError> {
        day_range(from, to)?;
        check_kind(kind)?;
        let mut unit = self.db.unit(self.db.read()).await?;
        let rows: Vec<(NaiveDate, String, i64, i64)> = sqlx::query_as(
            "SELECT day, kind, events, unique_users FROM analytics.daily_stats
              WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR kind = $3)
              ORDER BY day, kind",
        )
        .bind(from)
        .bind(to)
        .bind(kind)
        .fetch_all(&mut *unit)
        .await?;
        unit.finish().await?;
        Ok(rows.into_iter().map(event_count).collect())
    }

    async fn refresh_daily_stats(&self) -> Result<RefreshOutcome, AnalyticsError> {
        let started = Instant::now();
        let mut transaction = self.db.begin().await?;
        // A full recomputation may take longer than requests are allowed to.
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *transaction)
            .await?;
        let ours: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext('analytics.refresh_daily_stats'))",
        )
        .fetch_one(&mut *transaction)
        .await?;
        if !ours {
            return Ok(RefreshOutcome::AlreadyRunning);
        }
        sqlx::query("SELECT analytics.refresh_daily_stats()")
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        metrics::histogram!("analytics_daily_stats_refresh_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(RefreshOutcome::Refreshed { took_ms })
    }

    async fn maintain_partitions(&self) -> Result<PartitionReport, AnalyticsError> {
        let today = Utc::now().date_naive();
        // From yesterday: rows of a late hour before midnight still find their partition.
        let first = today.checked_sub_days(Days::new(1)).unwrap_or(today);
        let created = partitions::create(
            &self.db,
            first,
            self.partitions.days_ahead.saturating_add(2),
        )
        .await?;
        let keep_from = today
            .checked_sub_days(Days::new(u64::from(
                self.partitions.retention_days.max(1) - 1,
            )))
            .unwrap_or(today);
        let dropped = partitions::drop_before(&self.db, keep_from).await?;
        Ok(PartitionReport { created, dropped })
    }
}

fn event_count((day, kind, events, unique_users): (NaiveDate, String, i64, i64)) -> EventCount {
    EventCount {
        day,
        kind,
        events,
        unique_users,
    }
}
