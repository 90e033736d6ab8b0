//! The api-server's one error type, [`ApiError`], and every mapping from a crate's error to a
//! problem document: its status, its stable `type` (`/problems/<kind>`) and its title.
//!
//! Handlers return `Result<_, ApiError>` and use `?` on the crates' calls; the `From` impls
//! below decide what the caller sees. 4xx for what the caller can change, 503 while the
//! database is unavailable, and a bare 500 for the rest, whose cause is logged here (inside
//! the request's span, so the line carries its request id) and never sent. Problems the
//! api-server raises itself have a named constructor here, so no kind or title is spelled
//! anywhere else.

use access::Refusal;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use ai_store::AiError;
use analytics::AnalyticsError;
use core_store::UserError;
use db_core::DbError;
use http_problem::Problem;
use ledger::LedgerError;

/// An answer other than success, as the caller will see it.
#[derive(Debug, Clone)]
pub struct ApiError {
    problem: Problem,
    /// Sent as `Retry-After` (whole seconds, at least one).
    retry_after: Option<std::time::Duration>,
}

/// What handlers return.
pub type ApiResult<T = HttpResponse> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self::from(Problem::new(status, kind, title))
    }

    #[must_use]
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        Self {
            problem: self.problem.with_detail(detail),
            ..self
        }
    }

    /// The same error telling the caller when to try again (`Retry-After`).
    #[must_use]
    pub fn retry_after(self, wait: std::time::Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..self
        }
    }

    /// The problem document sent (also the body of a failed batch item).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// A failure the caller cannot act on: logged with its cause, answered without it.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The request failed on the server",
        )
    }

    /// 400: the query string does not parse or asks for something impossible.
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::from(Problem::invalid_query(detail))
    }
}

/// A constructor for each problem the server raises itself, with its status, kind and title;
/// callers add a detail where one helps (`.with_detail(..)`).
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident: $status:ident, $kind:literal, $title:literal;)*) => {
        impl ApiError {
            $(
                $(#[$doc])*
                pub fn $name() -> Self {
                    Self::new(StatusCode::$status, $kind, $title)
                }
            )*
        }
    };
}

problems! {
    /// A path segment does not parse.
    invalid_path: BAD_REQUEST, "invalid-path", "The path is invalid";
    /// A route that does not exist.
    no_such_route: NOT_FOUND, "no-such-route", "No such route";
    /// A body that is not `application/json`.
    unsupported_media_type: UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type",
        "The body must be application/json";
    /// The body's bytes could not be read.
    unreadable_body: BAD_REQUEST, "unreadable-body", "The body could not be read";
    /// The body exceeds `server.max_body_bytes`.
    body_too_large: PAYLOAD_TOO_LARGE, "body-too-large", "The body is too large";
    /// The body is not JSON.
    malformed_json: BAD_REQUEST, "malformed-json", "The body is not valid JSON";
    /// A field of the body has the wrong type or shape (the detail names its path).
    invalid_body_field: BAD_REQUEST, "invalid-field", "A field of the body is invalid";
    /// A batch with no rows, or more than a request may carry.
    batch_size: UNPROCESSABLE_ENTITY, "batch-size", "The batch size is out of range";
    /// An `Idempotency-Key` header that is empty, too long or not text.
    invalid_idempotency_key: BAD_REQUEST, "invalid-idempotency-key",
        "The Idempotency-Key header is invalid";
    /// The `Idempotency-Key` header and the body's `id` name different transfers.
    idempotency_key_mismatch: BAD_REQUEST, "idempotency-key-mismatch",
        "The Idempotency-Key header and the body's id differ";
    /// A bearer token that matches no configured token.
    invalid_token: UNAUTHORIZED, "invalid-token", "The bearer token is not valid";
    /// No bearer token where one is needed.
    missing_token: UNAUTHORIZED, "missing-token", "A bearer token is required";
    /// A caller past its rate limit (`[limits]`); `Retry-After` says when to try again.
    rate_limited: TOO_MANY_REQUESTS, "rate-limited", "Too many requests from this caller";
    /// A `Host` other than this machine's, while the server runs without tokens: a page
    /// elsewhere reaching it through DNS rebinding.
    host_not_allowed: FORBIDDEN, "host-not-allowed",
        "Without tokens, this server answers only to localhost";
    /// A caller the access table does not allow this (the detail says why).
    forbidden: FORBIDDEN, "forbidden", "The caller may not do this";
    /// No live cache entry under the key.
    cache_miss: NOT_FOUND, "cache-miss", "No live entry under that key";
    /// No fact under the key.
    fact_not_found: NOT_FOUND, "fact-not-found", "No such fact";
    /// No transfer with the id.
    transfer_not_found: NOT_FOUND, "transfer-not-found", "No such transfer";
    /// The backend's admin routes, where no backend is configured.
    backend_not_supervised: NOT_FOUND, "backend-not-supervised", "No backend is supervised";
    /// Another api-server holds the supervision lock.
    not_leader: CONFLICT, "not-leader", "Another api-server supervises the processes";
    /// `/ready`, the detail saying what is missing.
    not_ready: SERVICE_UNAVAILABLE, "not-ready", "The service is not ready";
    /// The request outlived `server.request_timeout`.
    timeout: SERVICE_UNAVAILABLE, "timeout", "The request took too long";
    /// The server stopped taking this kind of work (its worker or recorder is closing).
    shutting_down: SERVICE_UNAVAILABLE, "shutting-down", "The server is shutting down";
    /// The database is unreachable, saturated or lost a conflict for a moment.
    database_unavailable: SERVICE_UNAVAILABLE, "database-unavailable",
        "The database is unavailable; try again";
    /// A check of the schema refused a value the crates' own validation let through.
    refused_by_check: UNPROCESSABLE_ENTITY, "invalid-field", "A field is invalid";
    /// A value the database cannot store as given (SQLSTATE class 22).
    invalid_data: UNPROCESSABLE_ENTITY, "invalid-data", "A value cannot be stored as given";
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.problem.response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(seconds.max(1)),
            );
        }
        response
    }
}

/// What the admin routes' authorisation (shared with the supervisor) answers.
impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        error.problem
    }
}

/// The admin routes shared with the supervisor answer with their own problems.
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self {
            problem,
            retry_after: None,
        }
    }
}

/// Each crate error by value, as `?` hands it over, mapped as by reference below (a batch maps
/// its items' errors without owning them).
macro_rules! by_value {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                Self::from(&error)
            }
        }
    )*};
}

by_value!(DbError, LedgerError, AiError, AnalyticsError, UserError);

impl From<&DbError> for ApiError {
    fn from(error: &DbError) -> Self {
        match error {
            DbError::PoolTimedOut
            | DbError::PoolClosed
            | DbError::ConnectionLost { .. }
            | DbError::Unreachable { .. }
            | DbError::TlsFailed { .. }
            | DbError::SerializationFailure { .. }
            | DbError::Deadlock { .. }
            | DbError::StatementTimeout { .. }
            | DbError::LockNotAvailable { .. } => {
                tracing::warn!(%error, "database unavailable");
                Self::database_unavailable()
            }
            // A table's CHECK refused a value: the caller's input, which the crate's own
            // validation did not catch. A check over a whole row names no field; its name
            // stays in the log.
            DbError::CheckViolation { field, .. } => {
                tracing::info!(%error, "refused by a check");
                let refused = Self::refused_by_check();
                match field {
                    Some(field) => {
                        refused.with_detail(format!("{field}: out of the allowed values"))
                    }
                    None => refused,
                }
            }
            // Class 22, data exceptions: a value the caller sent cannot be stored as it is (a
            // NUL character in a path segment, a number out of a column's range, ...).
            error
                if error
                    .sqlstate()
                    .is_some_and(|state| state.starts_with("22")) =>
            {
                tracing::info!(%error, "refused data");
                Self::invalid_data()
            }
            _ => Self::internal(error),
        }
    }
}

impl From<&LedgerError> for ApiError {
    fn from(error: &LedgerError) -> Self {
        use LedgerError as E;
        let (status, kind, title) = match error {
            E::Db(error) => return error.into(),
            E::UnexpectedResult(_) => return Self::internal(error),
            E::InvalidAmount { .. } => (422, "invalid-amount", "The amount must be positive"),
            E::AmountOutOfRange => (422, "amount-out-of-range", "The amount is out of range"),
            E::InvalidDecimal { .. } => {
                (422, "invalid-amount", "The amount is not a decimal number")
            }
            E::InvalidAsset { .. } => (422, "invalid-asset", "The asset code is invalid"),
            E::UnknownAsset { .. } => (422, "unknown-asset", "No such asset in this ledger"),
            E::NotSealed(_) => (409, "transfer-not-sealed", "The transfer is not sealed yet"),
            E::ShardsBusy(_) => (
                503,
                "wallet-busy",
                "The wallet's funds are held by concurrent transfers; retry",
            ),
            E::InvalidField { .. } => (422, "invalid-field", "A field is invalid"),
            E::BatchSize { .. } => (422, "batch-size", "The batch size is out of range"),
            E::SameWallet => (422, "same-wallet", "A transfer needs two different wallets"),
            E::LimitNotAllowed { .. } | E::LimitAboveBalance { .. } => {
                (422, "limit-refused", "The limit is refused")
            }
            E::WalletNotFound(_) => (404, "wallet-not-found", "No such wallet"),
            E::UserNotFound(_) => (404, "user-not-found", "No such user"),
            E::PendingNotFound(_) => (404, "pending-not-found", "No such pending transfer"),
            E::NftNotFound(_) => (404, "nft-not-found", "No such NFT"),
            E::WalletClosed(_) => (409, "wallet-closed", "The wallet is closed"),
            E::WalletNotEmpty { .. } => (409, "wallet-not-empty", "The wallet is not empty"),
            E::AssetMismatch { .. } => (409, "asset-mismatch", "The wallets hold different assets"),
            E::InsufficientFunds { .. } => (409, "insufficient-funds", "Insufficient funds"),
            E::Overflow { .. } => (409, "balance-overflow", "The balance would overflow"),
            E::IdConflict { .. } => (
                409,
                "idempotency-conflict",
                "The transfer id was used before with other fields",
            ),
            E::PendingAlreadyResolved(_) => (
                409,
                "pending-resolved",
                "The pending transfer is already resolved",
            ),
            E::PendingExpired(_) => (409, "pending-expired", "The pending transfer has expired"),
            E::PendingNotExpired(_) => (
                409,
                "pending-not-expired",
                "The pending transfer has not expired",
            ),
            E::AmountExceedsPending { .. } => (
                409,
                "amount-exceeds-pending",
                "The amount exceeds the pending transfer",
            ),
            E::LinkedEventFailed => (
                409,
                "linked-transfer-failed",
                "Not applied: another transfer of the linked batch failed",
            ),
            E::RewardConflict { .. } => (
                409,
                "reward-conflict",
                "The reward was paid before with other terms",
            ),
            E::NftNotOwned { .. } => (409, "nft-not-owned", "The NFT is not owned by that user"),
            E::NftBurned(_) => (409, "nft-burned", "The NFT has been burned"),
            E::NftConflict(_) => (
                409,
                "nft-conflict",
                "The NFT id was used before with other fields",
            ),
            // The enum is non-exhaustive: a new variant is a failure until it is mapped here.
            _ => return Self::internal(error),
        };
        described(status, kind, title, error)
    }
}

impl From<&AiError> for ApiError {
    fn from(error: &AiError) -> Self {
        let (status, kind, title) = match error {
            AiError::Db(error) => return error.into(),
            AiError::Compute(_) | AiError::Export(_) | AiError::UnexpectedData(_) => {
                return Self::internal(error);
            }
            AiError::InvalidField { .. } => (422, "invalid-field", "A field is invalid"),
            AiError::UserNotFound(_) => (404, "user-not-found", "No such user"),
            AiError::ConversationNotFound(_) => {
                (404, "conversation-not-found", "No such conversation")
            }
            AiError::ExampleConflict { .. } => (
                409,
                "example-conflict",
                "The idempotency key was used before with other content",
            ),
            _ => return Self::internal(error),
        };
        described(status, kind, title, error)
    }
}

impl From<&AnalyticsError> for ApiError {
    fn from(error: &AnalyticsError) -> Self {
        match error {
            AnalyticsError::InvalidField { .. } => {
                described(422, "invalid-field", "A field is invalid", error)
            }
            AnalyticsError::Closed => Self::shutting_down(),
            AnalyticsError::Db(error) => error.into(),
            // A failed flush, or a variant not mapped yet.
            _ => Self::internal(error),
        }
    }
}

impl From<&UserError> for ApiError {
    fn from(error: &UserError) -> Self {
        match error {
            UserError::InvalidField { .. } => {
                described(422, "invalid-field", "A field is invalid", error)
            }
            UserError::EmailTaken => {
                described(409, "email-taken", "A user with that e-mail exists", error)
            }
            UserError::NotFound(_) => described(404, "user-not-found", "No such user", error),
            UserError::Db(error) => error.into(),
            // The enum is non-exhaustive: a new variant is a failure until it is mapped here.
            other => Self::internal(other),
        }
    }
}

/// Refusals of the access policy: 401, 403, 429, or the 404 of a resource the caller may not
/// learn exists.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let detail = refusal.to_string();
        match refusal {
            Refusal::MissingToken => Self::missing_token(),
            Refusal::InvalidToken(None) => Self::invalid_token(),
            Refusal::InvalidToken(Some(why)) => Self::invalid_token().with_detail(why),
            Refusal::Forbidden(why) => Self::forbidden().with_detail(why),
            Refusal::HiddenWallet(wallet) => Self::from(LedgerError::WalletNotFound(wallet)),
            Refusal::HiddenNft(nft) => Self::from(LedgerError::NftNotFound(nft)),
            Refusal::HiddenTransfer => Self::transfer_not_found(),
            Refusal::InvalidPath => Self::invalid_path(),
            Refusal::RateLimited { wait, .. } => {
                Self::rate_limited().with_detail(detail).retry_after(wait)
            }
            Refusal::Ledger(error) => Self::from(error),
            // A route without a rule, or a refusal not mapped yet: the server's fault.
            other => Self::internal(&other),
        }
    }
}

/// A problem whose detail is the error's own message (the crates' messages hold no data the
/// caller did not send).
fn described(status: u16, kind: &str, title: &str, error: &dyn std::fmt::Display) -> ApiError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, kind, title).with_detail(error.to_string())
}
