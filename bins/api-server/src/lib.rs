//! The `api-server` binary: the REST API over every data crate, with health, readiness and
//! (as the crates fill in) their routes.
//!
//! [`Application::build`] resolves the database (the configured server, or the embedded
//! cluster under `./.data/pg` when none is configured), applies migrations when that is the
//! policy, and binds the HTTP server; [`Application::run_until_stopped`] serves until SIGINT or
//! SIGTERM, finishes in-flight requests, closes the pools and stops the embedded cluster if
//! it started it. `main.rs` only loads configuration and sets up logging.
//!
//! Architecture invariant: handlers hold the crates' handles (behind traits as the crates
//! grow) and translate HTTP to calls and errors to problem documents; no domain rule lives
//! here.

mod health;
pub mod settings;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use db_core::migrate::{MigrationSet, Migrator, UpOptions};
use db_core::{DatabaseTarget, Db, LocalCluster};

use settings::Settings;

/// Every migration set the api-server serves, in declaration order.
pub fn all_sets() -> Vec<MigrationSet> {
    vec![
        db_core::migrate::core_set(),
        ai_store::migration_set(),
        ledger::migration_set(),
        analytics::migration_set(),
    ]
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM; both stop the server gracefully.
async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    db: Db,
    /// Held so the embedded cluster lives as long as the server (dropping it stops the
    /// cluster if this process started it).
    cluster: Option<LocalCluster>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let target = DatabaseTarget::resolve(&settings.database).await?;
        let embedded = target.cluster.is_some();
        let migrator = Migrator::new(all_sets())?.select(&settings.migrations.sets)?;
        if settings.migrations.apply_on_start.unwrap_or(embedded) {
            let mut connection = target.connect().await?;
            let report = migrator.up(&mut connection, UpOptions::default()).await?;
            tracing::info!(applied = report.applied_count(), "migrations are current");
        }
        let db = Db::connect_with(&settings.database, target.options.clone()).await?;

        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address).with_context(|| {
            format!(
                "cannot listen on {}:{}",
                settings.server.host, settings.server.port
            )
        })?;
        let port = listener.local_addr()?.port();
        let db_data = web::Data::new(db.clone());
        let migrator_data = web::Data::new(migrator);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(db_data.clone())
                .app_data(migrator_data.clone())
                .service(health::health)
                .service(health::ready)
        })
        .listen(listener)?
        // Signals are ours (see run_until_stopped): actix would treat SIGINT as a forced stop.
        .disable_signals()
        .shutdown_timeout(30)
        .run();

        tracing::info!(
            address = %format!("http://{}:{port}", settings.server.host),
            database = %target.describe(),
            embedded,
            "api-server listening"
        );
        let DatabaseTarget { cluster, .. } = target;
        Ok(Self {
            port,
            server,
            db,
            cluster,
        })
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server as SIGTERM would (tests, embedding).
    pub fn stop_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (actix stops accepting and lets in-flight requests
    /// finish), then closes the pools and stops the embedded cluster if it was started here.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let on_signal = tokio::spawn(async move {
            match shutdown_signal().await {
                Ok(signal) => tracing::info!(signal, "shutting down; finishing in-flight requests"),
                Err(error) => {
                    tracing::error!(%error, "cannot listen for shutdown signals; stopping");
                }
            }
            handle.stop(true).await;
        });
        let served = self.server.await;
        on_signal.abort();
        self.db.close().await;
        drop(self.cluster);
        served
    }
}
