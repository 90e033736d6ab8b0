//! Admin control of supervised processes: the shared admin routes (`admin-api`) behind the
//! admin token, and the seed system's backend routes, kept for its clients:
//! `POST /api/v1/admin/backend/{start,stop,restart}` and `GET /api/v1/admin/backend/status`,
//! which act on the process named [`BACKEND`].

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use admin_api::AdminState;
use orchestrator::{HealthCheck, HealthProbe, ProcessSpec, Supervisor};

use access::Access;

use crate::admission::Http;
use crate::error::{ApiError, ApiResult};
use crate::settings::OrchestratorSettings;
use db_core::lease::Lease;

/// The supervised backend's process name.
pub const BACKEND: &str = "backend";

/// The processes to supervise: the backend when the orchestrator is enabled.
pub fn processes(settings: &OrchestratorSettings) -> Vec<ProcessSpec> {
    let Some(binary) = settings.binary.as_ref().filter(|_| settings.enabled) else {
        return Vec::new();
    };
    let mut spec = ProcessSpec::new(BACKEND, binary.display().to_string());
    spec.args.clone_from(&settings.args);
    spec.env.clone_from(&settings.env);
    spec.inherit_env.clone_from(&settings.inherit_env);
    spec.health = HealthCheck {
        probe: HealthProbe::Http {
            url: format!(
                "{}{}",
                settings.url.trim_end_matches('/'),
                settings.health_path
            ),
            expected_status: 200,
        },
        ..HealthCheck::default()
    };
    vec![spec]
}

/// The admin routes' state: the supervisor, guarded by their rules (the `admin` scope). With `leadership`,
/// only the supervising instance accepts start, stop and restart (another answers 409
/// `not-leader`: acting here would run a second copy of the process).
pub fn admin_state(
    supervisor: Arc<Supervisor>,
    access: Access,
    leadership: Option<Lease>,
) -> AdminState {
    AdminState {
        supervisor,
        authorise: Arc::new(move |request| {
            access.admit(&Http(request)).map_err(ApiError::from)?;
            match &leadership {
                Some(leadership) if request.method() == Method::POST && !leadership.is_held() => {
                    Err(ApiError::not_leader()
                        .with_detail(
                            "send process control to the instance holding the supervision lock",
                        )
                        .into())
                }
                _ => Ok(()),
            }
        }),
    }
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route(
            "/api/v1/admin/backend/status",
            web::get().to(backend_status),
        )
        .route(
            "/api/v1/admin/backend/{action}",
            web::post().to(backend_action),
        );
    admin_api::configure(config);
}

fn backend_not_supervised() -> ApiError {
    ApiError::backend_not_supervised().with_detail("set orchestrator.enabled and orchestrator.binary (or ORCHESTRATOR_ENABLED and GO_BACKEND_BINARY)")
}

/// The supervised backend's status (the seed's route)
#[utoipa::path(get, path = "/api/v1/admin/backend/status", tag = "admin",
    responses((status = 200, body = admin_api::routes::ProcessView)))]
pub async fn backend_status(request: HttpRequest, state: web::Data<AdminState>) -> ApiResult {
    (state.authorise)(&request)?;
    backend(&state)
}

/// The backend's status as the answer.
fn backend(state: &AdminState) -> ApiResult {
    let status = state
        .supervisor
        .status(BACKEND)
        .map_err(|_| backend_not_supervised())?;
    Ok(HttpResponse::Ok().json(status))
}

/// Start, stop or restart the supervised backend (the seed's routes)
#[utoipa::path(post, path = "/api/v1/admin/backend/{action}", tag = "admin", params(("action" = String, Path, description = "start, stop or restart")),
    responses((status = 200, body = admin_api::routes::ProcessView), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn backend_action(
    request: HttpRequest,
    state: web::Data<AdminState>,
    action: web::Path<String>,
) -> ApiResult {
    (state.authorise)(&request)?;
    // Refuse at once when there is no backend to act on.
    backend(&state)?;
    let action = admin_api::routes::Action::parse(&action)?;
    Ok(admin_api::routes::act(&state, BACKEND, action).await?)
}
