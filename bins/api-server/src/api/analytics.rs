//! `/api/v1/analytics`: recording metrics and events (one or a batch; buffered by the
//! recorder, answered with 202), bucketed metric queries, event counts and the daily rollup.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use analytics::{
    Analytics, AnalyticsError, Event, Labels, MetricPoint, MetricQuery, Recorded, Recorder,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{CanRead, CanWrite};
use crate::api::body::Body;
use crate::error::{ApiError, ApiResult};

/// Rows one request may record.
pub const MAX_BATCH: usize = 10_000;

pub fn configure(config: &mut web::ServiceConfig) {
    // One scope per family: the router compares the prefix once instead of matching every
    // route's pattern of every family.
    config.service(
        web::scope("/api/v1/analytics")
            .route("/metrics", web::post().to(record_metrics))
            .route("/events", web::post().to(record_events))
            .route("/metrics/{name}/buckets", web::get().to(buckets))
            .route("/events/counts", web::get().to(event_counts))
            .route("/daily-stats", web::get().to(daily_stats))
            .default_service(web::to(crate::api::not_found)),
    );
}

/// One row, or a batch of them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Result<Vec<T>, ApiError> {
        let rows = match self {
            Self::One(row) => vec![row],
            Self::Many(rows) => rows,
        };
        if rows.is_empty() || rows.len() > MAX_BATCH {
            return Err(ApiError::batch_size().with_detail(format!("1 to {MAX_BATCH} rows")));
        }
        Ok(rows)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricBody {
    name: String,
    value: f64,
    #[serde(default)]
    labels: Labels,
    /// Now when absent.
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    kind: String,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    #[serde(default)]
    properties: serde_json::Value,
    time: Option<DateTime<Utc>>,
}

fn accepted(outcomes: &[Recorded]) -> HttpResponse {
    let dropped = outcomes
        .iter()
        .filter(|outcome| **outcome == Recorded::Dropped)
        .count();
    HttpResponse::Accepted().json(RecordedCount {
        buffered: outcomes.len() - dropped,
        dropped,
    })
}

/// What a recording request left: points or events taken into the buffer, and those
/// dropped because it was full (the server's overflow policy).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Recorded)]
pub struct RecordedCount {
    buffered: usize,
    dropped: usize,
}

/// Record metric points (one, or an array of up to 10,000)
#[utoipa::path(post, path = "/api/v1/analytics/metrics", tag = "analytics", request_body = OneOrMany<MetricBody>,
    responses((status = 202, body = RecordedCount)))]
pub async fn record_metrics(
    _: CanWrite,
    recorder: web::Data<Recorder>,
    Body(body): Body<OneOrMany<MetricBody>>,
) -> ApiResult {
    let now = Utc::now();
    let points = body
        .into_vec()?
        .into_iter()
        .map(|row| MetricPoint {
            name: row.name,
            value: row.value,
            labels: row.labels,
            time: row.time.unwrap_or(now),
        })
        .collect();
    let outcomes = recorder.record_metrics(points).await?;
    Ok(accepted(&outcomes))
}

/// Record events (one, or an array of up to 10,000)
#[utoipa::path(post, path = "/api/v1/analytics/events", tag = "analytics", request_body = OneOrMany<EventBody>,
    responses((status = 202, body = RecordedCount)))]
pub async fn record_events(
    _: CanWrite,
    recorder: web::Data<Recorder>,
    Body(body): Body<OneOrMany<EventBody>>,
) -> ApiResult {
    let now = Utc::now();
    let events = body
        .into_vec()?
        .into_iter()
        .map(|row| Event {
            kind: row.kind,
            user_id: row.user_id,
            session_id: row.session_id,
            properties: row.properties,
            time: row.time.unwrap_or(now),
        })
        .collect();
    let outcomes = recorder.record_events(events).await?;
    Ok(accepted(&outcomes))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BucketsQuery {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_seconds: u64,
    /// A JSON object of labels the series must carry, e.g. `{"route":"/orders"}`.
    labels: Option<String>,
}

/// Time-bucketed aggregates of a metric
#[utoipa::path(get, path = "/api/v1/analytics/metrics/{name}/buckets", tag = "analytics", params(("name" = String, Path), BucketsQuery),
    responses((status = 200, body = Vec<analytics::Aggregates>)))]
pub async fn buckets(
    _: CanRead,
    analytics: web::Data<dyn Analytics>,
    name: web::Path<String>,
    query: web::Query<BucketsQuery>,
) -> ApiResult {
    let labels: Labels = match &query.labels {
        Some(text) => serde_json::from_str(text).map_err(|error| {
            ApiError::from(AnalyticsError::InvalidField {
                field: "labels",
                reason: format!("a JSON object of strings: {error}"),
            })
        })?,
        None => Labels::new(),
    };
    let buckets = analytics
        .metric_buckets(&MetricQuery {
            name: name.into_inner(),
            labels,
            from: query.from,
            to: query.to,
            bucket: Duration::from_secs(query.bucket_seconds),
        })
        .await?;
    Ok(HttpResponse::Ok().json(buckets))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DaysQuery {
    from: NaiveDate,
    to: NaiveDate,
    kind: Option<String>,
}

/// Events and unique users per kind and UTC day
#[utoipa::path(get, path = "/api/v1/analytics/events/counts", tag = "analytics", params(DaysQuery),
    responses((status = 200, body = Vec<analytics::EventCount>)))]
pub async fn event_counts(
    _: CanRead,
    analytics: web::Data<dyn Analytics>,
    query: web::Query<DaysQuery>,
) -> ApiResult {
    let counts = analytics
        .event_counts(query.from, query.to, query.kind.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(counts))
}

/// The daily rollup, as of its last refresh
#[utoipa::path(get, path = "/api/v1/analytics/daily-stats", tag = "analytics", params(DaysQuery),
    responses((status = 200, body = Vec<analytics::EventCount>)))]
pub async fn daily_stats(
    _: CanRead,
    analytics: web::Data<dyn Analytics>,
    query: web::Query<DaysQuery>,
) -> ApiResult {
    let stats = analytics
        .daily_stats(query.from, query.to, query.kind.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(stats))
}
