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

use crate::admission::Caller;
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

/// One row, or a batch of 1 to [`MAX_BATCH`] of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

/// The document's `oneOf` of the row and an array of 1 to [`MAX_BATCH`] rows (written out:
/// the derive cannot bound the array of an enum variant).
impl<T: utoipa::ToSchema> utoipa::PartialSchema for OneOrMany<T> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ArrayBuilder, OneOfBuilder, Ref};
        let row = Ref::from_schema_name(T::name());
        let rows = ArrayBuilder::new()
            .items(row.clone())
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH));
        OneOfBuilder::new().item(rows).item(row).into()
    }
}

impl<T: utoipa::ToSchema> utoipa::ToSchema for OneOrMany<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        format!("OneOrMany_{}", T::name()).into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// What `POST /metrics` takes (an alias: the path macro documents generic types only through
/// a derive).
pub type MetricRows = OneOrMany<MetricBody>;
/// What `POST /events` takes.
pub type EventRows = OneOrMany<EventBody>;

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
    #[schema(pattern = r"^[A-Za-z_:][A-Za-z0-9_:.]{0,199}$")]
    name: String,
    value: f64,
    #[serde(default)]
    #[schema(schema_with = labels_schema)]
    labels: Labels,
    /// Now when absent.
    time: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    #[schema(min_length = 1, max_length = 100)]
    kind: String,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    /// A JSON object (at most 64 KiB of JSON); absent or null: `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    properties: serde_json::Value,
    time: Option<DateTime<Utc>>,
}

/// A metric's labels as `analytics::validate_labels` takes them: at most 16, named like
/// Prometheus labels, values of at most 200 characters.
fn labels_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"));
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(analytics::MAX_LABEL_VALUE_CHARS));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(name))
        .additional_properties(Some(value))
        .max_properties(Some(analytics::MAX_LABELS))
        .build()
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
#[utoipa::path(post, path = "/api/v1/analytics/metrics", tag = "analytics", request_body = MetricRows,
    responses((status = 202, body = RecordedCount)))]
pub async fn record_metrics(
    _: Caller,
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
#[utoipa::path(post, path = "/api/v1/analytics/events", tag = "analytics", request_body = EventRows,
    responses((status = 202, body = RecordedCount)))]
pub async fn record_events(
    _: Caller,
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
    #[param(minimum = 1)]
    bucket_seconds: u64,
    /// A JSON object of labels the series must carry, e.g. `{"route":"/orders"}`.
    labels: Option<String>,
}

/// Time-bucketed aggregates of a metric
#[utoipa::path(get, path = "/api/v1/analytics/metrics/{name}/buckets", tag = "analytics", params(("name" = String, Path, pattern = r"^[A-Za-z_:][A-Za-z0-9_:.]{0,199}$"), BucketsQuery),
    responses((status = 200, body = Vec<analytics::Aggregates>)))]
pub async fn buckets(
    _: Caller,
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
    #[param(min_length = 1, max_length = 100)]
    kind: Option<String>,
}

/// Events and unique users per kind and UTC day
#[utoipa::path(get, path = "/api/v1/analytics/events/counts", tag = "analytics", params(DaysQuery),
    responses((status = 200, body = Vec<analytics::EventCount>)))]
pub async fn event_counts(
    _: Caller,
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
    _: Caller,
    analytics: web::Data<dyn Analytics>,
    query: web::Query<DaysQuery>,
) -> ApiResult {
    let stats = analytics
        .daily_stats(query.from, query.to, query.kind.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(stats))
}
