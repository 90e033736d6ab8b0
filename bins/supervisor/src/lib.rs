//! The `supervisor` binary: keeps the processes of `supervisor.toml` alive and healthy
//! (the `orchestrator` crate), serves their control API (the `admin-api` routes, bearer token
//! required) and `/metrics`, and stops them in reverse dependency order on SIGTERM or SIGINT.
//! `supervisor ctl` is a client of a running supervisor.

pub mod config;
pub mod ctl;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use admin_api::AdminState;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use orchestrator::Supervisor;

use config::Config;

/// Runs until SIGTERM or SIGINT: starts every autostart process, serves the control API,
/// then stops the processes (dependents first) and the server.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = admin_api::exposition::prometheus_builder()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    admin_api::exposition::spawn_upkeep(metrics.clone());
    orchestrator::describe_metrics();
    let supervisor = Arc::new(Supervisor::new(config.processes.clone())?);
    let listener = TcpListener::bind(config.control.listen)
        .with_context(|| format!("cannot listen on {}", config.control.listen))?;
    let address = listener.local_addr()?;
    let tls = config
        .control
        .tls
        .as_ref()
        .map(app_config::TlsFiles::server_config)
        .transpose()
        .context("control.tls")?;
    let state = web::Data::new(AdminState::with_token(
        supervisor.clone(),
        config.token().to_owned(),
    ));
    let metrics = web::Data::new(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .configure(admin_api::configure)
            .route("/metrics", web::get().to(render_metrics))
            .route("/health", web::get().to(HttpResponse::Ok))
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    }
    .disable_signals()
    .workers(1)
    .run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    tracing::info!(
        address = %format!("{scheme}://{address}"),
        processes = supervisor.list().len(),
        "supervisor listening"
    );

    if let Err(error) = supervisor.start_all().await {
        // One process failing to start leaves the others running; the API reports it.
        tracing::error!(%error, "not every process could be started");
    }
    let signal = orchestrator::stop_requested().await?;
    tracing::info!(signal, "stopping every process");
    supervisor.shutdown().await;
    handle.stop(true).await;
    let _ = serving.await;
    tracing::info!("supervisor stopped");
    Ok(())
}

/// Prometheus text format; not behind the token (scrapers read it from the local network).
async fn render_metrics(metrics: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}
