//! `/metrics`: everything recorded through the `metrics` facade, in Prometheus text format.

use std::sync::OnceLock;

use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::jobs::Jobs;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use (the facade has one global
/// recorder; several servers in one process, as in tests, share it).
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed before; /metrics will be empty");
            }
            handle
        })
        .clone()
}

#[get("/metrics")]
pub async fn metrics_endpoint(
    prometheus: web::Data<PrometheusHandle>,
    jobs: web::Data<Jobs>,
) -> HttpResponse {
    for (name, status) in jobs.statuses() {
        metrics::gauge!("fodi_job_alive", "job" => name).set(if status.alive { 1.0 } else { 0.0 });
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render())
}
