//! RFC 9457 problem documents (`application/problem+json`): the body of every error response
//! of the api-server and the supervisor's control API.
//!
//! A [`Problem`] is only the wire shape and its named constructors shared by both surfaces;
//! which domain error becomes which problem is decided by each binary's own error type (the
//! api-server's `ApiError`), never here.
//!
//! Architecture invariant: this crate knows actix-web and serde, nothing of any domain crate.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `/problems/not-ready`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
        }
    }

    /// 400 `invalid-query`: the query string does not parse or asks for something impossible.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "The query string is invalid",
        )
        .with_detail(detail)
    }

    /// The error handler of `web::QueryConfig`: a query the extractor refused is
    /// [`invalid_query`](Self::invalid_query). (actix hands the error over by value.)
    #[allow(clippy::needless_pass_by_value)]
    pub fn query_rejected(
        error: actix_web::error::QueryPayloadError,
        _: &actix_web::HttpRequest,
    ) -> actix_web::Error {
        Self::invalid_query(error.to_string()).into()
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpResponse::build(status)
            .content_type("application/problem+json")
            .json(self)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.status)
    }
}

/// Handlers may return `Result<_, Problem>`.
impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.response()
    }
}
