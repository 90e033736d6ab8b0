//! Bearer tokens, compared in constant time and never logged.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;

use http_problem::Problem;

/// The token a request's `Authorization: Bearer` header carries, if any.
pub fn bearer(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Whether `offered` is `expected`, in time independent of where they differ.
pub fn token_matches(offered: &str, expected: &str) -> bool {
    !expected.is_empty()
        && constant_time_eq::constant_time_eq(offered.as_bytes(), expected.as_bytes())
}

/// `Ok` when the request carries `expected`; else the 401 problem to answer with.
pub fn require(request: &HttpRequest, expected: &str) -> Result<(), Problem> {
    match bearer(request) {
        Some(offered) if token_matches(offered, expected) => Ok(()),
        Some(_) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "The bearer token is not valid",
        )),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing-token",
            "A bearer token is required",
        )),
    }
}
