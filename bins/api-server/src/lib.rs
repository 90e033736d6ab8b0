//! The `api-server` binary: the REST API over every crate ([`api`]: users, the AI store, the
//! ledger, analytics), process administration ([`admin`], with leader election in
//! [`leader`]), the live WebSocket stream ([`live`]), health and readiness, `/metrics`, the
//! OpenAPI document and its offline docs ([`openapi`]), and the background jobs
//! (`orchestrator::jobs`).
//!
//! [`Application::build`] resolves the database (the configured server, or the embedded
//! cluster under `./.data/pg` when none is configured), applies migrations when that is the
//! policy, composes the crates, starts the jobs, the live hub and (when configured) the
//! supervision of the backend, and binds the HTTP server; [`Application::run_until_stopped`]
//! serves until SIGINT or SIGTERM, then shuts down in order (see its documentation).
//! `main.rs` only loads configuration and sets up logging.
//!
//! Architecture invariant: handlers hold the crates' handles (behind their traits) and
//! translate HTTP to calls and errors to problem documents ([`error`]); no domain rule lives
//! here.

pub mod admin;
pub mod admission;
pub mod api;
pub mod error;
pub mod health;
pub mod leader;
pub mod live;
mod middleware;
mod observability;
pub mod openapi;
pub mod pools;
pub mod settings;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use ai_store::PgAiStore;
use analytics::{Analytics, PgAnalytics, Recorder};
use anyhow::Context;
use db_core::migrate::{Migrator, UpOptions};
use db_core::{DatabaseTarget, LocalCluster};
use ledger::{Ledger, PgLedger};
use orchestrator::Supervisor;

use access::Access;
use orchestrator::jobs::{self, Jobs};
use settings::{JobSettings, Settings};

/// Every migration set the api-server serves: the migrator's list.
pub use migrator::all_sets;

/// Stops a running server as SIGTERM would: live clients are told goodbye, then the server
/// stops accepting and finishes in-flight requests.
#[derive(Clone)]
pub struct StopHandle {
    server: actix_web::dev::ServerHandle,
    live: live::LiveHub,
}

impl StopHandle {
    /// `graceful`: let in-flight requests finish.
    pub async fn stop(&self, graceful: bool) {
        self.live.close_all();
        self.server.stop(graceful).await;
    }
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    pools: pools::Pools,
    supervisor: Arc<Supervisor>,
    ai: Option<PgAiStore>,
    ledger: Option<Arc<PgLedger>>,
    recorder: Recorder,
    jobs: web::Data<Jobs>,
    live: live::LiveHub,
    live_tasks: Vec<tokio::task::JoinHandle<()>>,
    election: Option<tokio::task::JoinHandle<()>>,
    /// Held so the embedded cluster lives as long as the server (dropping it stops the
    /// cluster if this process started it).
    cluster: Option<LocalCluster>,
}

/// The background jobs of the sets the deployment manages.
fn start_jobs(
    settings: &JobSettings,
    ai: Option<PgAiStore>,
    ledger: Option<Arc<PgLedger>>,
    analytics: Option<PgAnalytics>,
) -> Jobs {
    let mut jobs = Jobs::default();
    if let Some(ai) = ai {
        let maintain = jobs::on(ai, |ai| async move { ai.run_maintenance().await });
        jobs.spawn("ai_maintenance", settings.ai_maintenance, maintain);
    }
    if let Some(ledger) = ledger {
        use ledger::maintenance;
        // Each run is bounded by the ledger (see `ledger::maintenance`).
        let seal = jobs::on(ledger.clone(), |ledger| async move {
            maintenance::seal(ledger.as_ref()).await
        });
        jobs.spawn("ledger_sealer", settings.ledger_sealer, seal);
        let expire = jobs::on(ledger.clone(), |ledger| async move {
            maintenance::expire_holds(ledger.as_ref()).await
        });
        jobs.spawn("hold_expiry", settings.hold_expiry, expire);
        let settle = jobs::on(ledger.clone(), |ledger| async move {
            maintenance::settle_history(ledger.as_ref()).await
        });
        jobs.spawn("history_settler", settings.history_settler, settle);
        // A violation or a broken block fails the run, logged with what was found.
        let audit = jobs::on(ledger, |ledger| async move {
            let audit = maintenance::audit(ledger.as_ref()).await?;
            audit.verdict().map_err(anyhow::Error::msg)
        });
        jobs.spawn("ledger_audit", settings.ledger_audit, audit);
    }
    if let Some(analytics) = analytics {
        let refresh = jobs::on(analytics.clone(), |analytics| async move {
            analytics.refresh_daily_stats().await
        });
        jobs.spawn("daily_stats_refresh", settings.daily_stats_refresh, refresh);
        let partitions = jobs::on(analytics, |analytics| async move {
            analytics.maintain_partitions().await
        });
        jobs.spawn(
            "partition_maintenance",
            settings.partition_maintenance,
            partitions,
        );
    }
    jobs
}

/// `server.workers` when unset: a thread per core, or half the cores when PostgreSQL runs on
/// this machine. A worker gathers its concurrent cache reads into one statement; where
/// PostgreSQL (and its clients) share the cores, fewer workers gather more reads per
/// statement and leave PostgreSQL its cores (docs/benchmarks.md has the measurements).
fn default_workers(database_on_this_host: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if database_on_this_host {
        (cores / 2).max(1)
    } else {
        cores
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check()?;
        let target = DatabaseTarget::resolve(&settings.database).await?;
        let embedded = target.cluster.is_some();
        let migrator = Migrator::new(all_sets())?.select(&settings.migrations.sets)?;
        if settings.migrations.apply_on_start.unwrap_or(embedded) {
            let mut connection = target.connect().await?;
            let report = migrator.up(&mut connection, UpOptions::default()).await?;
            tracing::info!(applied = report.applied_count(), "migrations are current");
        }
        // On the embedded cluster the server connects as a login of its own, not the
        // superuser that owns the schemas (see deploy/roles.sql).
        let login = if embedded && settings.roles.per_crate {
            let mut connection = target.connect().await?;
            db_core::sqlx::raw_sql(pools::ROLES_SQL)
                .execute(&mut connection)
                .await
                .context("cannot create the run-time login (deploy/roles.sql)")?;
            target.options.clone().username(pools::EMBEDDED_LOGIN)
        } else {
            target.options.clone()
        };
        let pools = pools::Pools::open(&settings, &login).await?;
        let bridge = (!settings.analytics.bridge_metrics.is_empty()
            && settings.manages("analytics"))
        .then(|| analytics::MetricsBridge::new(settings.analytics.bridge_metrics.clone()));
        let prometheus = observability::prometheus(bridge.as_ref());

        let ai = if settings.manages("ai") {
            Some(PgAiStore::start(pools.ai.clone(), settings.ai.clone()).await?)
        } else {
            None
        };
        let ai_services = ai.as_ref().map(api::ai::AiServices::on);
        let ledger = settings
            .manages("blockchain")
            .then(|| Arc::new(PgLedger::new(pools.ledger.clone(), settings.ledger.clone())));
        let ledger_data: Option<web::Data<dyn Ledger>> = ledger
            .clone()
            .map(|ledger| web::Data::from(ledger as Arc<dyn Ledger>));
        let owners_data = ledger_data
            .as_ref()
            .map(|ledger| web::Data::new(access::WalletOwners::new(ledger.clone().into_inner())));
        let analytics = settings.manages("analytics").then(|| {
            PgAnalytics::new(
                pools.analytics.clone(),
                settings.analytics.partitions.clone(),
            )
        });
        if let Some(analytics) = &analytics
            && let Err(error) = analytics.maintain_partitions().await
        {
            // Rows land in the default partitions meanwhile; the job tries again.
            tracing::warn!(%error, "cannot create the analytics partitions yet");
        }
        let analytics_data = analytics
            .clone()
            .map(|analytics| web::Data::from(Arc::new(analytics) as Arc<dyn Analytics>));
        let recorder = Recorder::start(&pools.analytics, settings.analytics.recorder.clone());
        let recorder_data = web::Data::new(recorder.clone());
        if let Some(bridge) = &bridge {
            // Runs until the recorder is closed at shutdown.
            bridge.run(recorder.clone(), settings.analytics.bridge_interval);
        }
        let jobs = web::Data::new(start_jobs(
            &settings.jobs,
            ai.clone(),
            ledger.clone(),
            analytics,
        ));

        let proxies = access::TrustedProxies::parse(&settings.server.trusted_proxies)?;
        let access = Access::new(&settings.auth, &settings.limits, proxies)?;
        let processes = admin::processes(&settings.orchestrator);
        let supervises = !processes.is_empty();
        let supervisor = Arc::new(Supervisor::new(processes)?);
        // With processes to supervise, the instance holding the lease runs them.
        let (leadership, election) = if supervises {
            let options = pools.readonly.session_options().clone();
            let (lease, task) = leader::elect(options, supervisor.clone());
            (Some(lease), Some(task))
        } else {
            (None, None)
        };
        let admin_data = web::Data::new(admin::admin_state(
            supervisor.clone(),
            access.clone(),
            leadership,
        ));
        let (live, live_tasks) = live::LiveHub::start(
            ledger.clone().map(|ledger| ledger as Arc<dyn Ledger>),
            &supervisor,
        );
        let live_data = web::Data::new(live.clone());
        let timeout_data =
            web::Data::new(middleware::RequestTimeout(settings.server.request_timeout));
        let body_limit = api::body::BodyLimit(settings.server.max_body_bytes);
        // Without the `core` set, `public` and its users belong to the core backend.
        let users_data: Option<web::Data<dyn core_store::Users>> =
            settings.manages("core").then(|| {
                web::Data::from(Arc::new(core_store::PgUsers::new(pools.core.clone()))
                    as Arc<dyn core_store::Users>)
            });
        let cors_origins = settings.server.cors_origins.clone();

        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address).with_context(|| {
            format!(
                "cannot listen on {}:{}",
                settings.server.host, settings.server.port
            )
        })?;
        let port = listener.local_addr()?.port();
        let tls = settings
            .server
            .tls
            .as_ref()
            .map(app_config::TlsFiles::server_config)
            .transpose()
            .context("server.tls")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let scrape_data = web::Data::new(observability::ScrapeSources {
            pools: pools.opened().to_vec(),
            ledger: ledger.clone(),
            ai: ai.clone(),
            recorder: analytics_data.is_some().then(|| recorder.clone()),
            live: live.clone(),
        });
        let db_data = web::Data::new(pools.readonly.clone());
        let migrator_data = web::Data::new(migrator);
        let prometheus_data = web::Data::new(prometheus);
        let loopback_hosts_only = settings
            .auth
            .is_open()
            .then(|| web::Data::new(middleware::LoopbackHostsOnly));
        let access_data = web::Data::new(access);
        let jobs_data = jobs.clone();
        let on_this_host = target.is_on_this_host();
        let workers = settings
            .server
            .workers
            .unwrap_or_else(|| default_workers(on_this_host));
        let server = HttpServer::new(move || {
            let mut app = App::new()
                .wrap(actix_web::middleware::from_fn(middleware::observe))
                .wrap(middleware::cors(&cors_origins))
                .app_data(timeout_data.clone())
                .app_data(body_limit)
                .configure(api::configure_errors)
                .app_data(db_data.clone())
                .app_data(migrator_data.clone())
                .app_data(prometheus_data.clone())
                .app_data(scrape_data.clone())
                .app_data(access_data.clone())
                .app_data(admin_data.clone())
                .app_data(jobs_data.clone());
            if let Some(only) = &loopback_hosts_only {
                app = app.app_data(only.clone());
            }
            // The API families first: the router tries services in the order registered, and
            // a family's scope costs a prefix comparison where each route with a parameter
            // registered before it would cost a regex match on every request.
            if let Some(users) = &users_data {
                app = app.app_data(users.clone()).configure(api::users::configure);
            }
            if let Some(ai) = &ai_services {
                app = app.configure(|config| api::ai::configure(config, ai));
            }
            if let Some(analytics) = &analytics_data {
                app = app
                    .app_data(analytics.clone())
                    .app_data(recorder_data.clone())
                    .configure(api::analytics::configure);
            }
            if let (Some(ledger), Some(owners)) = (&ledger_data, &owners_data) {
                app = app
                    .app_data(ledger.clone())
                    .app_data(owners.clone())
                    .configure(api::ledger::configure);
            }
            app = app
                .service(health::health)
                .service(health::ready)
                .service(observability::metrics_endpoint)
                .service(openapi::document)
                .service(openapi::page)
                .service(openapi::bundle)
                .service(openapi::init)
                .service(openapi::styles)
                .configure(admin::configure)
                .app_data(live_data.clone())
                .route("/ws", web::get().to(live::websocket));
            app.default_service(web::to(api::not_found))
        })
        // Responses, streamed lines and WebSocket frames leave as soon as they are written:
        // with Nagle's algorithm (the OS default) a write behind unacknowledged bytes waits for
        // the client's ACK, which clients delay by 40 ms or more.
        .tcp_nodelay(true)
        .workers(workers);
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        // Signals are ours (see run_until_stopped): actix would treat SIGINT as a forced stop.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
        .run();

        tracing::info!(
            address = %format!("{scheme}://{}:{port}", settings.server.host),
            database = %target.describe(),
            embedded,
            workers,
            "api-server listening"
        );
        let DatabaseTarget { cluster, .. } = target;
        Ok(Self {
            port,
            server,
            pools,
            supervisor,
            ai,
            ledger,
            recorder,
            jobs,
            live,
            live_tasks,
            election,
            cluster,
        })
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pools the server's parts use (tests check what each may do).
    pub fn pools(&self) -> &pools::Pools {
        &self.pools
    }

    /// A handle that stops the server as SIGTERM would (tests, embedding).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            live: self.live.clone(),
        }
    }

    /// Serves until SIGINT/SIGTERM, then shuts down in this order, each step waiting for the
    /// one before:
    /// 1. live clients are told goodbye, the server stops accepting and finishes in-flight
    ///    requests (nothing is submitted to the crates after this);
    /// 2. the background jobs stop;
    /// 3. the analytics recorder writes everything it accepted;
    /// 4. the AI store writes the cache hits it counted in memory and closes its connections;
    /// 5. the ledger closes its engine's connections;
    /// 6. supervised processes stop, then the supervision lock is released (the next leader
    ///    never runs them alongside ours);
    /// 7. the pools close, then the embedded cluster stops if it was started here.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.stop_handle();
        let on_signal = tokio::spawn(async move {
            match orchestrator::stop_requested().await {
                Ok(signal) => tracing::info!(signal, "shutting down; finishing in-flight requests"),
                Err(error) => {
                    tracing::error!(%error, "cannot listen for shutdown signals; stopping");
                }
            }
            handle.stop(true).await;
        });
        let served = self.server.await;
        on_signal.abort();
        for task in &self.live_tasks {
            task.abort();
        }
        self.jobs.stop();
        let recorded = self.recorder.close().await;
        if recorded.lost > 0 {
            tracing::error!(rows = recorded.lost, "analytics rows lost at shutdown");
        }
        if let Some(ai) = &self.ai
            && let Err(error) = ai.shutdown().await
        {
            tracing::error!(%error, "cache hit counts lost at shutdown");
        }
        if let Some(ledger) = &self.ledger {
            ledger.shutdown().await;
        }
        self.supervisor.shutdown().await;
        if let Some(election) = &self.election {
            election.abort();
        }
        self.pools.close().await;
        drop(self.cluster);
        tracing::info!("api-server stopped");
        served
    }
}
