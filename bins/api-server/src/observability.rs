//! `/metrics`: everything recorded through the `metrics` facade, in Prometheus text format.

use std::sync::OnceLock;

use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::PrometheusHandle;

use orchestrator::jobs::Jobs;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use: Prometheus, and beside it the analytics
/// bridge when one is given (the facade has one global recorder; several servers in one
/// process, as in tests, share the first one installed).
pub fn prometheus(bridge: Option<&analytics::MetricsBridge>) -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = admin_api::exposition::prometheus_builder().build_recorder();
            let handle = recorder.handle();
            admin_api::exposition::spawn_upkeep(handle.clone());
            let installed = match bridge {
                Some(bridge) => metrics::set_global_recorder(
                    metrics_util::layers::FanoutBuilder::default()
                        .add_recorder(recorder)
                        .add_recorder(bridge.clone())
                        .build(),
                )
                .map_err(drop),
                None => metrics::set_global_recorder(recorder).map_err(drop),
            };
            if installed.is_err() {
                tracing::warn!("a metrics recorder was installed before; /metrics will be empty");
            }
            describe_metrics();
            handle
        })
        .clone()
}

/// Help texts of every metric this server exports (Prometheus and `promtool` want them).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    ai_store::describe_metrics();
    analytics::describe_metrics();
    orchestrator::describe_metrics();
    describe_histogram!(
        "fodi_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of HTTP requests, by method and status"
    );
    describe_histogram!(
        "fodi_http_gathered_batch_size",
        "Requests answered by one database call when concurrent requests are gathered, by kind (cache_reads)"
    );
    describe_gauge!(
        "fodi_supervision_leader",
        "1 while this instance holds the supervision lock and runs the supervised processes"
    );
    describe_counter!(
        "fodi_ws_slow_clients_dropped_total",
        "WebSocket clients disconnected as too slow, by reason: lagging (their queue overflowed) or not_reading (a frame waited too long to be taken)"
    );
}

/// Open to this host (unless `auth.metrics_open_on_loopback` is off); from any other host
/// it needs a token with the `metrics` scope.
#[get("/metrics")]
pub async fn metrics_endpoint(
    request: actix_web::HttpRequest,
    prometheus: web::Data<PrometheusHandle>,
    jobs: web::Data<Jobs>,
    access: web::Data<crate::access::Access>,
) -> Result<HttpResponse, crate::error::ApiError> {
    access.admit_metrics(&request)?;
    for (name, status) in jobs.statuses() {
        metrics::gauge!("fodi_job_alive", "job" => name).set(if status.alive { 1.0 } else { 0.0 });
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render()))
}
