//! The REST API under `/api/v1`: one module per route family, each translating HTTP to calls
//! of a crate's trait and the crate's errors to problem documents ([`errors`]).

pub mod ai;
pub mod analytics;
pub mod body;
pub mod cache_reads;
pub mod errors;
pub mod gather;
pub mod ledger;
pub mod users;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use admin_api::Problem;

/// Problem documents for what the extractors refuse (a path or query that does not parse),
/// and for routes that do not exist.
pub fn configure_errors(config: &mut web::ServiceConfig) {
    config
        .app_data(web::PathConfig::default().error_handler(|error, _| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-path",
                "The path is invalid",
            )
            .with_detail(error.to_string())
            .into()
        }))
        .app_data(web::QueryConfig::default().error_handler(Problem::query_rejected));
}

pub async fn not_found() -> HttpResponse {
    Problem::new(StatusCode::NOT_FOUND, "no-such-route", "No such route").response()
}
