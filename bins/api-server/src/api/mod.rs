//! The REST API under `/api/v1`: one module per route family, each translating HTTP to calls
//! of a crate's trait; the crates' errors become problem documents through
//! [`crate::error::ApiError`].

pub mod ai;
pub mod analytics;
pub mod body;
pub mod cache_reads;
pub mod gather;
pub mod ledger;
pub mod users;

use actix_web::{HttpResponse, ResponseError, web};
use http_problem::Problem;

use crate::error::ApiError;

/// Problem documents for what the extractors refuse (a path or query that does not parse),
/// and for routes that do not exist.
pub fn configure_errors(config: &mut web::ServiceConfig) {
    config
        .app_data(web::PathConfig::default().error_handler(|error, _| {
            ApiError::invalid_path()
                .with_detail(error.to_string())
                .into()
        }))
        .app_data(web::QueryConfig::default().error_handler(Problem::query_rejected));
}

pub async fn not_found() -> HttpResponse {
    ApiError::no_such_route().error_response()
}
