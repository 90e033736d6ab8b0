//! The OpenAPI 3 document, generated from the handlers' annotations and the crates' own types
//! (`utoipa::ToSchema`, derived behind each crate's `openapi` feature), served at
//! `/api-docs/openapi.json`; `/docs` renders it with the vendored Swagger UI.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use http_problem::Problem;

use access::rules;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FODI API",
        description = "Users, the AI assistant's store, the FODI token ledger, product analytics and process administration. \
                       Errors are application/problem+json documents with a stable `type`."
    ),
    paths(
        crate::health::health,
        crate::health::ready,
        crate::api::users::create,
        crate::api::users::get,
        crate::api::ledger::open_wallet,
        crate::api::ledger::wallet,
        crate::api::ledger::statement,
        crate::api::ledger::balance_at,
        crate::api::ledger::transfer,
        crate::api::ledger::batch,
        crate::api::ledger::get_transfer,
        crate::api::ledger::transfer_proof,
        crate::api::ledger::post_pending,
        crate::api::ledger::void_pending,
        crate::api::ledger::mint,
        crate::api::ledger::nfts_of,
        crate::api::ledger::nft,
        crate::api::ledger::move_nft,
        crate::api::ledger::burn_nft,
        crate::api::ledger::issue,
        crate::api::ledger::pay_reward,
        crate::api::ledger::rewards_of,
        crate::api::ledger::blocks,
        crate::api::ledger::verify_blocks,
        crate::api::ai::cache_get,
        crate::api::ai::cache_put,
        crate::api::ai::cache_delete,
        crate::api::ai::create_conversation,
        crate::api::ai::list_conversations,
        crate::api::ai::conversation,
        crate::api::ai::delete_conversation,
        crate::api::ai::append,
        crate::api::ai::messages,
        crate::api::ai::window,
        crate::api::ai::remember,
        crate::api::ai::fact,
        crate::api::ai::facts,
        crate::api::ai::search_facts,
        crate::api::ai::record_example,
        crate::api::ai::export,
        crate::api::ai::forget_user,
        crate::api::analytics::record_metrics,
        crate::api::analytics::record_events,
        crate::api::analytics::buckets,
        crate::api::analytics::event_counts,
        crate::api::analytics::daily_stats,
        crate::admin::backend_status,
        crate::admin::backend_action,
        admin_api::routes::list,
        admin_api::routes::status,
        admin_api::routes::start,
        admin_api::routes::stop,
        admin_api::routes::restart,
        admin_api::routes::logs,
    ),
    // Every other schema is collected from the paths: the crates' own types, derived behind
    // their `openapi` feature, and the few views this server composes.
    components(schemas(Problem)),
    modifiers(&BearerTokens, &CommonProblems),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "users", description = "The minimal identity to run standalone"),
        (name = "ai", description = "The AI assistant's store, per user"),
        (name = "ledger", description = "The FODI token ledger"),
        (name = "analytics", description = "Metrics, events and their rollups"),
        (name = "admin", description = "Supervised processes (admin scope)"),
    )
)]
pub struct ApiDoc;

/// Each operation's security from the access table (`access::rules`): open routes
/// need nothing; the others a service token with the scope named, or, where end users may
/// call them, a user's JWT.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A service token; the requirement names the scope it needs",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An end user's JWT from the core backend (docs/security.md)",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", item.get.as_mut()),
                ("POST", item.post.as_mut()),
                ("PUT", item.put.as_mut()),
                ("DELETE", item.delete.as_mut()),
                ("PATCH", item.patch.as_mut()),
            ];
            for (method, operation) in operations {
                let (Some(operation), Some(rule)) =
                    (operation, rules::rule_for(method, Some(path)))
                else {
                    continue;
                };
                let mut security = Vec::new();
                if let Some(scope) = rule.scope {
                    security.push(SecurityRequirement::new("service", [scope.name()]));
                    if rule.users != rules::Users::Never {
                        security.push(SecurityRequirement::new("user", Vec::<String>::new()));
                    }
                }
                operation.security = Some(security);
            }
        }
    }
}

/// The answers any route may give besides its own: refused input, tokens, size, media type,
/// and a database that is unavailable for a moment.
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let common = [
            ("400", "The path, query or body is invalid"),
            ("401", "A bearer token is missing or invalid"),
            ("403", "The token may not do this"),
            ("404", "No such route or resource"),
            ("413", "The body is too large"),
            ("415", "The body is not JSON"),
            ("422", "A value is refused"),
            (
                "503",
                "Unavailable for a moment (database, timeout, shutdown)",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/problem+json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

#[get("/api-docs/openapi.json")]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const STYLES: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
/// The page that loads the bundle on `/api-docs/openapi.json`, with `validatorUrl: null` (the
/// default sends the document to validator.swagger.io, and fails offline).
const PAGE: &str = include_str!("../assets/swagger-ui/index.html");
const INIT: &[u8] = include_bytes!("../assets/swagger-ui/swagger-init.js");
#[get("/docs")]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

#[get("/docs/swagger-ui-bundle.js")]
pub async fn bundle() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(BUNDLE)
}

#[get("/docs/swagger-init.js")]
pub async fn init() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(INIT)
}

#[get("/docs/swagger-ui.css")]
pub async fn styles() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(STYLES)
}
