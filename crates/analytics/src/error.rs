//! Every failure of the analytics crate, with the facts a caller needs to act on it.

use db_core::{DbError, RetryableError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// Refused before anything was buffered or written.
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The recorder was closed; nothing more is accepted.
    #[error("the recorder is closed")]
    Closed,
    /// A flush could not write (the rows stay buffered and are retried).
    #[error("writing buffered rows failed: {0}")]
    Flush(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AnalyticsError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(DbError::from(error))
    }
}

impl RetryableError for AnalyticsError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Db(error) if error.is_retryable())
    }
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> AnalyticsError {
    AnalyticsError::InvalidField {
        field,
        reason: reason.into(),
    }
}
