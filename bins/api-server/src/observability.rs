//! `/metrics`: everything recorded through the `metrics` facade, in Prometheus text format,
//! plus what is read at each scrape (pools, WebSocket clients, the recorder's buffer,
//! readiness). docs/metrics.md lists every metric.

use std::sync::{Arc, OnceLock};

use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::PrometheusHandle;

use ai_store::PgAiStore;
use analytics::Recorder;
use db_core::Db;
use db_core::migrate::Migrator;
use ledger::PgLedger;
use orchestrator::jobs::Jobs;

use crate::live::LiveHub;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// How long a scrape waits for the readiness check before it reports not ready.
const READINESS_WITHIN_SCRAPE: std::time::Duration = std::time::Duration::from_secs(2);

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
            metrics::gauge!("fodi_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Help texts of every metric this server exports (Prometheus and `promtool` want them).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    db_core::metrics::describe_metrics();
    ai_store::describe_metrics();
    analytics::describe_metrics();
    orchestrator::describe_metrics();
    ledger::metrics::describe_metrics();
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
    describe_gauge!(
        "fodi_build_info",
        "Always 1; its version label is the running build's"
    );
    describe_gauge!(
        "fodi_ready",
        "1 when /ready would answer 200 at the last scrape, 0 when 503"
    );
    describe_gauge!(
        "fodi_migrations_pending",
        "Migrations of this build not applied to the database yet, by set"
    );
    describe_gauge!(
        "fodi_migrations_drifted",
        "Applied migrations whose name or checksum differ from this build's, by set"
    );
    describe_gauge!("fodi_ws_clients", "WebSocket clients connected to /ws");
    for reason in ["lagging", "not_reading"] {
        metrics::counter!("fodi_ws_slow_clients_dropped_total", "reason" => reason).increment(0);
    }
    describe_counter!(
        "fodi_ws_slow_clients_dropped_total",
        "WebSocket clients disconnected as too slow, by reason: lagging (their queue overflowed) or not_reading (a frame waited too long to be taken)"
    );
}

/// What `/metrics` reads at each scrape.
pub struct ScrapeSources {
    pub pools: Vec<(&'static str, Db)>,
    pub ledger: Option<Arc<PgLedger>>,
    pub ai: Option<PgAiStore>,
    pub recorder: Option<Recorder>,
    pub live: LiveHub,
}

impl ScrapeSources {
    fn record(&self) {
        for (name, db) in &self.pools {
            db_core::metrics::record_db(name, db);
        }
        if let Some(ledger) = &self.ledger {
            db_core::metrics::record_pool("ledger_engine", ledger.engine_usage());
        }
        if let Some(ai) = &self.ai {
            db_core::metrics::record_pool("ai_cache", ai.cache().statements_usage());
        }
        if let Some(recorder) = &self.recorder {
            recorder.record_gauges();
        }
        metrics::gauge!("fodi_ws_clients").set(self.live.clients() as f64);
    }
}

/// Open to this host (unless `auth.metrics_open_on_loopback` is off); from any other host
/// it needs a token with the `metrics` scope.
#[get("/metrics")]
pub async fn metrics_endpoint(
    request: actix_web::HttpRequest,
    prometheus: web::Data<PrometheusHandle>,
    jobs: web::Data<Jobs>,
    access: web::Data<access::Access>,
    sources: web::Data<ScrapeSources>,
    readonly: web::Data<Db>,
    migrator: web::Data<Migrator>,
) -> Result<HttpResponse, crate::error::ApiError> {
    access.admit_metrics(&crate::admission::Http(&request))?;
    sources.record();
    // Its answer is in the gauges it sets; why it is not ready is logged and on /ready. A
    // database that does not answer must not hold up the rest of the scrape, when it is
    // most wanted: past the bound, not ready.
    let checked = tokio::time::timeout(
        READINESS_WITHIN_SCRAPE,
        crate::health::readiness(&readonly, &migrator, &jobs),
    )
    .await;
    if checked.is_err() {
        metrics::gauge!("fodi_ready").set(0.0);
    }
    for (name, status) in jobs.statuses() {
        metrics::gauge!("fodi_job_alive", "job_name" => name).set(if status.alive {
            1.0
        } else {
            0.0
        });
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render()))
}
