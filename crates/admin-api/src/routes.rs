//! The admin routes over a [`Supervisor`], every one behind the admin bearer token:
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/api/v1/admin/processes` | every process's status, in dependency order |
//! | GET | `/api/v1/admin/processes/{name}` | its status |
//! | POST | `/api/v1/admin/processes/{name}/start` | its status once started (dependencies first) |
//! | POST | `/api/v1/admin/processes/{name}/stop` | its status once stopped |
//! | POST | `/api/v1/admin/processes/{name}/restart` | its status once restarted |
//! | GET | `/api/v1/admin/processes/{name}/logs?lines=N` | its last N output lines (default 100) |

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use orchestrator::{OrchestratorError, Supervisor};
use serde::Deserialize;

use crate::auth;
use http_problem::Problem;

/// Most log lines one request returns.
pub const MAX_LOG_LINES: usize = 10_000;

/// Decides whether a request may use the admin routes; `Err` is the 401 or 403 to answer.
pub type Authorise = Arc<dyn Fn(&HttpRequest) -> Result<(), Problem> + Send + Sync>;

/// What the routes need: the supervisor and who may use them.
pub struct AdminState {
    pub supervisor: Arc<Supervisor>,
    pub authorise: Authorise,
}

impl AdminState {
    /// Routes guarded by one bearer token.
    pub fn with_token(supervisor: Arc<Supervisor>, token: String) -> Self {
        Self {
            supervisor,
            authorise: Arc::new(move |request| auth::require(request, &token)),
        }
    }
}

/// Registers the routes; the app must hold a `web::Data<AdminState>`.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(web::QueryConfig::default().error_handler(Problem::query_rejected))
        .route("/api/v1/admin/processes", web::get().to(list))
        .route("/api/v1/admin/processes/{name}", web::get().to(status))
        .route(
            "/api/v1/admin/processes/{name}/start",
            web::post().to(start),
        )
        .route("/api/v1/admin/processes/{name}/stop", web::post().to(stop))
        .route(
            "/api/v1/admin/processes/{name}/restart",
            web::post().to(restart),
        )
        .route("/api/v1/admin/processes/{name}/logs", web::get().to(logs));
}

/// The problem document for an orchestrator error.
pub fn problem(error: &OrchestratorError) -> Problem {
    let (status, kind, title) = match error {
        OrchestratorError::UnknownProcess(_) => {
            (StatusCode::NOT_FOUND, "unknown-process", "No such process")
        }
        OrchestratorError::StartFailed { .. } => (
            StatusCode::CONFLICT,
            "start-failed",
            "The process could not be started",
        ),
        OrchestratorError::DependencyNotReady { .. } => (
            StatusCode::CONFLICT,
            "dependency-not-ready",
            "A dependency of the process is not ready",
        ),
        OrchestratorError::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "The supervisor is shutting down",
        ),
        OrchestratorError::InvalidSpec { .. }
        | OrchestratorError::UnknownDependency { .. }
        | OrchestratorError::DependencyCycle(_)
        | OrchestratorError::DuplicateProcess(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-configuration",
            "The process configuration is invalid",
        ),
        // A variant added to the orchestrator is a failure until it is mapped here.
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The request failed on the server",
        ),
    };
    Problem::new(status, kind, title).with_detail(error.to_string())
}

fn authorised(request: &HttpRequest, state: &AdminState) -> Result<(), Problem> {
    (state.authorise)(request)
}

/// A supervised process as the admin routes answer it, for the OpenAPI document only (the
/// routes serialise the orchestrator's `ProcessStatus`). Which of the optional fields are
/// present depends on `state`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProcessView {
    pub name: String,
    /// `stopped`, `starting`, `running`, `unhealthy`, `backoff`, `stopping`, `exited` or
    /// `fatal`.
    pub state: String,
    /// While `starting`, `running`, `unhealthy` or `stopping`.
    pub pid: Option<u32>,
    /// Failed health checks in a row, while `unhealthy`.
    pub failures: Option<u32>,
    /// The restart waited for, while in `backoff`.
    pub attempt: Option<u32>,
    pub delay_ms: Option<u64>,
    /// How it ended, once `exited`.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Why it is `fatal`.
    pub reason: Option<String>,
    /// Automatic restarts since the supervisor started.
    pub restarts: u64,
    /// Seconds since it became running, while it is.
    pub uptime_seconds: Option<f64>,
    /// Latency of the last health check, in milliseconds.
    pub last_health_check_ms: Option<f64>,
}

/// One captured line of a process's output, for the OpenAPI document only (the route
/// serialises the orchestrator's `LogLine`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LogLineView {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

/// Every supervised process, in dependency order
#[utoipa::path(get, path = "/api/v1/admin/processes", tag = "admin",
    responses((status = 200, body = Vec<ProcessView>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    request: HttpRequest,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    Ok(HttpResponse::Ok().json(state.supervisor.list()))
}

/// A process's status
#[utoipa::path(get, path = "/api/v1/admin/processes/{name}", tag = "admin", params(("name" = String, Path)),
    responses((status = 200, body = ProcessView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    current(&state, &name)
}

/// The process's status as the answer (after the caller was authorised once).
fn current(state: &AdminState, name: &str) -> Result<HttpResponse, Problem> {
    let status = state.supervisor.status(name).map_err(|e| problem(&e))?;
    Ok(HttpResponse::Ok().json(status))
}

/// What a control route does to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    /// `start`, `stop` or `restart`; anything else is a 404 `unknown-action`.
    pub fn parse(name: &str) -> Result<Self, Problem> {
        match name {
            "start" => Ok(Self::Start),
            "stop" => Ok(Self::Stop),
            "restart" => Ok(Self::Restart),
            other => Err(
                Problem::new(StatusCode::NOT_FOUND, "unknown-action", "No such action")
                    .with_detail(format!("{other:?}: use start, stop or restart")),
            ),
        }
    }
}

/// Carries out `action` on process `name` (the caller authorised) and answers with its
/// status afterwards.
pub async fn act(state: &AdminState, name: &str, action: Action) -> Result<HttpResponse, Problem> {
    let supervisor = &state.supervisor;
    let done = match action {
        Action::Start => supervisor.start(name).await,
        Action::Stop => supervisor.stop(name).await,
        Action::Restart => supervisor.restart(name).await,
    };
    done.map_err(|e| problem(&e))?;
    current(state, name)
}

/// Start a process (dependencies first)
#[utoipa::path(post, path = "/api/v1/admin/processes/{name}/start", tag = "admin", params(("name" = String, Path)),
    responses((status = 200, body = ProcessView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn start(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    act(&state, &name, Action::Start).await
}

/// Stop a process
#[utoipa::path(post, path = "/api/v1/admin/processes/{name}/stop", tag = "admin", params(("name" = String, Path)),
    responses((status = 200, body = ProcessView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn stop(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    act(&state, &name, Action::Stop).await
}

/// Restart a process
#[utoipa::path(post, path = "/api/v1/admin/processes/{name}/restart", tag = "admin", params(("name" = String, Path)),
    responses((status = 200, body = ProcessView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn restart(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    act(&state, &name, Action::Restart).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// 1 to 10,000; 100 when absent.
    #[param(minimum = 1, maximum = 10_000)]
    pub lines: Option<usize>,
}

/// A process's recent output lines
#[utoipa::path(get, path = "/api/v1/admin/processes/{name}/logs", tag = "admin", params(("name" = String, Path), LogsQuery),
    responses((status = 200, body = Vec<LogLineView>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn logs(
    request: HttpRequest,
    state: web::Data<AdminState>,
    name: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> Result<HttpResponse, Problem> {
    authorised(&request, &state)?;
    let lines = query.lines.unwrap_or(100);
    if lines == 0 || lines > MAX_LOG_LINES {
        return Err(Problem::invalid_query(format!(
            "lines must be 1 to {MAX_LOG_LINES}"
        )));
    }
    let logs = state
        .supervisor
        .logs(&name, lines)
        .map_err(|e| problem(&e))?;
    Ok(HttpResponse::Ok().json(logs))
}
