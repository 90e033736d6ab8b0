//! `/api/v1/analytics`: recording metrics and events (one or a batch; buffered by the
//! recorder, answered with 202), bucketed metric queries, event counts and the daily rollup.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use admin_api::Problem;
use analytics::{
    Analytics, AnalyticsError, Event, Labels, MetricPoint, MetricQuery, PgAnalytics, Recorded,
    Recorder,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::access::{CanRead, CanWrite};
use crate::api::body::Body;
use crate::api::errors;
use crate::openapi::{ProblemDocument, schemas};

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

/// The problem document of an analytics error.
pub fn analytics_problem(error: &AnalyticsError) -> Problem {
    match error {
        AnalyticsError::InvalidField { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "A field is invalid",
        )
        .with_detail(error.to_string()),
        AnalyticsError::Closed => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "The server is shutting down",
        ),
        AnalyticsError::Db(error) => errors::database(error),
        AnalyticsError::Flush(_) => errors::internal(error),
    }
}

#[allow(clippy::needless_pass_by_value)]
fn fail(error: AnalyticsError) -> Problem {
    analytics_problem(&error)
}

/// One row, or a batch of them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Result<Vec<T>, Problem> {
        let rows = match self {
            Self::One(row) => vec![row],
            Self::Many(rows) => rows,
        };
        if rows.is_empty() || rows.len() > MAX_BATCH {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch-size",
                "The batch size is out of range",
            )
            .with_detail(format!("1 to {MAX_BATCH} rows")));
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
    HttpResponse::Accepted().json(json!({
        "buffered": outcomes.len() - dropped,
        "dropped": dropped,
    }))
}

/// Record metric points (one, or an array of up to 10,000)
#[utoipa::path(post, path = "/api/v1/analytics/metrics", tag = "analytics", request_body = OneOrMany<MetricBody>,
    responses((status = 202, body = schemas::Recorded), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn record_metrics(
    _: CanWrite,
    recorder: web::Data<Recorder>,
    Body(body): Body<OneOrMany<MetricBody>>,
) -> Result<HttpResponse, Problem> {
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
    let outcomes = recorder.record_metrics(points).await.map_err(fail)?;
    Ok(accepted(&outcomes))
}

/// Record events (one, or an array of up to 10,000)
#[utoipa::path(post, path = "/api/v1/analytics/events", tag = "analytics", request_body = OneOrMany<EventBody>,
    responses((status = 202, body = schemas::Recorded), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn record_events(
    _: CanWrite,
    recorder: web::Data<Recorder>,
    Body(body): Body<OneOrMany<EventBody>>,
) -> Result<HttpResponse, Problem> {
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
    let outcomes = recorder.record_events(events).await.map_err(fail)?;
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
    responses((status = 200, body = Vec<schemas::MetricBucket>), (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn buckets(
    _: CanRead,
    analytics: web::Data<PgAnalytics>,
    name: web::Path<String>,
    query: web::Query<BucketsQuery>,
) -> Result<HttpResponse, Problem> {
    let labels: Labels = match &query.labels {
        Some(text) => serde_json::from_str(text).map_err(|error| {
            fail(AnalyticsError::InvalidField {
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
        .await
        .map_err(fail)?;
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
    responses((status = 200, body = Vec<schemas::EventCount>), (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn event_counts(
    _: CanRead,
    analytics: web::Data<PgAnalytics>,
    query: web::Query<DaysQuery>,
) -> Result<HttpResponse, Problem> {
    let counts = analytics
        .event_counts(query.from, query.to, query.kind.as_deref())
        .await
        .map_err(fail)?;
    Ok(HttpResponse::Ok().json(counts))
}

/// The daily rollup, as of its last refresh
#[utoipa::path(get, path = "/api/v1/analytics/daily-stats", tag = "analytics", params(DaysQuery),
    responses((status = 200, body = Vec<schemas::EventCount>), (status = 400, body = ProblemDocument, content_type = "application/problem+json"), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn daily_stats(
    _: CanRead,
    analytics: web::Data<PgAnalytics>,
    query: web::Query<DaysQuery>,
) -> Result<HttpResponse, Problem> {
    let stats = analytics
        .daily_stats(query.from, query.to, query.kind.as_deref())
        .await
        .map_err(fail)?;
    Ok(HttpResponse::Ok().json(stats))
}
