//! What wraps every request: a request id (the caller's `X-Request-Id`, else a new UUIDv7)
//! echoed in the response, a span carrying it (with the method and path) around everything
//! logged while the request is served, a timeout, security headers, CORS, and, on a server
//! without tokens, a refusal of any `Host` but this machine's.

use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
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
    // `caller` is filled in once the request's token is checked (see `admission`).
    let span = tracing::info_span!("request", request_id = %id, %method, %path, caller = tracing::field::Empty);
    let answered = Answered {
        id: &id,
        method: method_label(&method),
        docs: path == "/docs" || path.starts_with("/docs/"),
        span: &span,
        started: Instant::now(),
    };
    if request.app_data::<web::Data<LoopbackHostsOnly>>().is_some()
        && !loopback_host(request.headers().get(header::HOST))
    {
        let mut response = request
            .into_response(ApiError::host_not_allowed().error_response())
            .map_into_boxed_body();
        let (status, route) = (response.status(), route_of(response.request()));
        finish(&answered, route, status, response.headers_mut(), false);
        return Ok(response);
    }
    let served = next.call(request).instrument(span.clone());
    match tokio::time::timeout(timeout, served).await {
        Ok(response) => {
            let mut response = response?.map_into_boxed_body();
            let (status, route) = (response.status(), route_of(response.request()));
            finish(&answered, route, status, response.headers_mut(), false);
            Ok(response)
        }
        Err(_) => {
            let mut response = ApiError::timeout().error_response();
            let status = response.status();
            let route = timed_out_route(&method, &path);
            finish(&answered, route, status, response.headers_mut(), true);
            // An error carrying its finished response, rendered as it is: the request it
            // belonged to went with the abandoned call, and a `ServiceResponse` needs one
            // (routing holds the only reference, so it cannot be kept aside beforehand).
            Err(InternalError::from_response("request timed out", response).into())
        }
    }
}

/// The metric's route label, from a closed set whatever a client sends: the route pattern
/// (`/api/v1/ledger/wallets/{id}`), not the path; `unmatched` for a path no route takes.
/// Asked once the request is routed, actix finds the pattern by the routed resource's index;
/// asked before, it would match the path against the routes a second time.
fn route_of(request: &actix_web::HttpRequest) -> String {
    request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned())
}

/// [`route_of`] for a request that timed out, which went with the abandoned call: the route of
/// the access table whose method and pattern match, matched as actix matches it. (`/metrics`,
/// not in the table, answers within its own bound.)
fn timed_out_route(method: &Method, path: &str) -> String {
    static ROUTES: std::sync::LazyLock<Vec<(&str, ResourceDef)>> = std::sync::LazyLock::new(|| {
        let rules = access::rules::RULES.iter();
        rules
            .map(|rule| (rule.method, ResourceDef::new(rule.path)))
            .collect()
    });
    let found = ROUTES
        .iter()
        .find(|(routed, pattern)| *routed == method.as_str() && pattern.is_match(path));
    found.map_or_else(
        || "unmatched".to_owned(),
        |(_, pattern)| pattern.pattern().unwrap_or("unmatched").to_owned(),
    )
}

/// What every answer gets: the request's id echoed, its log line (a warning when the
/// request timed out) and its duration in `fodi_http_request_duration_seconds`.
fn finish(
    request: &Answered<'_>,
    route: String,
    status: StatusCode,
    headers: &mut HeaderMap,
    timed_out: bool,
) {
    let Answered {
        id,
        method,
        docs,
        span,
        started,
    } = request;
    let _in_request = span.enter();
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, value);
    }
    security_headers(headers, *docs);
    let elapsed = started.elapsed();
    let (status_code, duration_ms) = (status.as_u16(), elapsed.as_secs_f64() * 1_000.0);
    if timed_out {
        tracing::warn!(status = status_code, duration_ms, "request timed out");
    } else {
        tracing::info!(status = status_code, duration_ms, "request");
    }
    metrics::histogram!(
        "fodi_http_request_duration_seconds",
        "method" => *method,
        "route" => route,
        "status" => status_code.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// The method as a metric label: one of the methods the API knows, else `other`.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// What every answer carries: no type sniffing; no caching unless the route chose its own
/// (the documentation's assets); on the documentation page, a policy that runs only its own
/// scripts and lets no other site frame it.
fn security_headers(headers: &mut HeaderMap, docs: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if docs {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                 form-action 'none'; frame-ancestors 'none'",
            ),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// Present (as app data) when the server runs without tokens: only `Host: localhost`,
/// `127.0.0.1` or `[::1]` (any port) is served, so that a web page cannot read the open
/// server through a name of its own that resolves to this machine (DNS rebinding).
#[derive(Debug, Clone, Copy)]
pub struct LoopbackHostsOnly;

/// Whether a `Host` header names this machine by its loopback name or address.
fn loopback_host(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|host| host.to_str().ok()) else {
        return false;
    };
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// A request as its log line and metrics name it.
struct Answered<'a> {
    id: &'a str,
    method: &'static str,
    docs: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_and_addresses_are_this_machine() {
        let host = |text: &'static str| loopback_host(Some(&HeaderValue::from_static(text)));
        for local in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(host(local), "{local}");
        }
        for other in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "",
        ] {
            assert!(!host(other), "{other}");
        }
        assert!(!loopback_host(None));
    }
}
