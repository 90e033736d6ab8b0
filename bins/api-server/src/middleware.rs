//! What wraps every request: a request id (the caller's `X-Request-Id`, else a new UUIDv7)
//! echoed in the response, a span carrying it (with the method and path) around everything
//! logged while the request is served, a timeout, and CORS.

use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};

use crate::error::ApiError;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Ids, the request's span, timing, the timeout and one log line per request.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let timeout = request
        .app_data::<web::Data<RequestTimeout>>()
        .map_or(Duration::from_secs(30), |timeout| timeout.0);
    let (method, path) = (request.method().clone(), request.path().to_owned());
    // Every event logged while serving the request (a handler's warning, a 500's cause, the
    // request's own line) carries these fields.
    // `caller` is filled in once the request's token is checked (see `access`).
    let span = tracing::info_span!("request", request_id = %id, %method, %path, caller = tracing::field::Empty);
    let answered = Answered {
        id: &id,
        method: &method,
        span: &span,
        started: Instant::now(),
    };
    let served = next.call(request).instrument(span.clone());
    match tokio::time::timeout(timeout, served).await {
        Ok(response) => {
            let mut response = response?.map_into_boxed_body();
            let status = response.status();
            finish(&answered, status, response.headers_mut(), false);
            Ok(response)
        }
        Err(_) => {
            let mut response = ApiError::timeout().error_response();
            let status = response.status();
            finish(&answered, status, response.headers_mut(), true);
            // An error carrying its finished response, rendered as it is: the request it
            // belonged to went with the abandoned call, and a `ServiceResponse` needs one
            // (routing holds the only reference, so it cannot be kept aside beforehand).
            Err(InternalError::from_response("request timed out", response).into())
        }
    }
}

/// What every answer gets: the request's id echoed, its log line (a warning when the
/// request timed out) and its duration in `fodi_http_request_duration_seconds`.
fn finish(request: &Answered<'_>, status: StatusCode, headers: &mut HeaderMap, timed_out: bool) {
    let Answered {
        id,
        method,
        span,
        started,
    } = request;
    let _in_request = span.enter();
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    let (status_code, duration_ms) = (status.as_u16(), elapsed.as_secs_f64() * 1_000.0);
    if timed_out {
        tracing::warn!(status = status_code, duration_ms, "request timed out");
    } else {
        tracing::info!(status = status_code, duration_ms, "request");
    }
    metrics::histogram!("fodi_http_request_duration_seconds", "method" => method.to_string(), "status" => status_code.to_string())
        .record(elapsed.as_secs_f64());
}

/// A request as its log line and metrics name it.
struct Answered<'a> {
    id: &'a str,
    method: &'a Method,
    span: &'a tracing::Span,
    started: Instant,
}

/// `server.request_timeout`, for [`observe`].
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// CORS as configured: none without origins, any origin for `*`.
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers([REQUEST_ID])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}
