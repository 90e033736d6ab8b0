//! `/health` (the process is alive) and `/ready` (it can serve: database reachable and every
//! migration set current).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, ResponseError, get, web};
use db_core::Db;
use db_core::migrate::Migrator;
use serde::Serialize;

use crate::error::ApiError;
use orchestrator::jobs::{JobStatus, Jobs};

/// The process is alive
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The process is alive.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    status: &'static str,
}

/// Everything the server needs is there.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
    /// `ok`.
    database: &'static str,
    /// `current`.
    migrations: &'static str,
    /// Each background job's last run, by name.
    jobs: BTreeMap<&'static str, JobRuns>,
}

/// A background job as anyone may see it: how it runs, not what its last run said (an error's
/// text can name hosts and tables; `/metrics` and the log carry it).
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobRuns {
    interval_ms: u64,
    runs: u64,
    failures: u64,
    /// Unix milliseconds.
    last_run_at_ms: Option<u64>,
    last_duration_ms: Option<u64>,
    last_ok: Option<bool>,
    alive: bool,
}

impl From<JobStatus> for JobRuns {
    fn from(status: JobStatus) -> Self {
        Self {
            interval_ms: status.interval_ms,
            runs: status.runs,
            failures: status.failures,
            last_run_at_ms: status.last_run_at_ms,
            last_duration_ms: status.last_duration_ms,
            last_ok: status.last_ok,
            alive: status.alive,
        }
    }
}

/// The database is reachable, migrations are current and the background jobs run
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Ready)))]
#[get("/ready")]
pub async fn ready(
    db: web::Data<Db>,
    migrator: web::Data<Migrator>,
    jobs: web::Data<Jobs>,
) -> HttpResponse {
    match readiness(&db, &migrator, &jobs).await {
        Ok(ready) => HttpResponse::Ok().json(ready),
        Err(detail) => ApiError::not_ready().with_detail(detail).error_response(),
    }
}

/// What `/ready` answers, `Err` saying why not; also sets `fodi_ready` and, per migration
/// set, `fodi_migrations_pending` and `fodi_migrations_drifted` (`/metrics` calls it too,
/// so that an alert sees what a load balancer sees).
pub async fn readiness(db: &Db, migrator: &Migrator, jobs: &Jobs) -> Result<Ready, String> {
    let answer = check(db, migrator, jobs).await;
    metrics::gauge!("fodi_ready").set(if answer.is_ok() { 1.0 } else { 0.0 });
    answer
}

async fn check(db: &Db, migrator: &Migrator, jobs: &Jobs) -> Result<Ready, String> {
    let unreachable = |error: db_core::DbError| {
        tracing::warn!(%error, "readiness: database unreachable");
        "the database is unreachable".to_owned()
    };
    let mut unit = db.unit(db.primary()).await.map_err(unreachable)?;
    let statuses = migrator.status(&mut unit).await.map_err(|error| {
        tracing::warn!(%error, "readiness: cannot read migration status");
        "the migration status cannot be read".to_owned()
    })?;
    unit.finish().await.map_err(unreachable)?;
    for status in &statuses {
        let set = status.set.clone();
        metrics::gauge!("fodi_migrations_pending", "set" => set.clone())
            .set(status.pending.len() as f64);
        metrics::gauge!("fodi_migrations_drifted", "set" => set).set(status.drift.len() as f64);
    }
    let behind: Vec<&str> = statuses
        .iter()
        .filter(|status| !status.is_current())
        .map(|status| status.set.as_str())
        .collect();
    if !behind.is_empty() {
        return Err(format!(
            "migrations are pending or drifted in: {}",
            behind.join(", ")
        ));
    }
    let jobs = jobs.statuses();
    let dead: Vec<&str> = jobs
        .iter()
        .filter(|(_, status)| !status.alive)
        .map(|(name, _)| *name)
        .collect();
    if !dead.is_empty() {
        return Err(format!("background jobs stopped: {}", dead.join(", ")));
    }
    Ok(Ready {
        status: "ready",
        database: "ok",
        migrations: "current",
        jobs: jobs
            .into_iter()
            .map(|(name, status)| (name, JobRuns::from(status)))
            .collect(),
    })
}
