//! Every failure of the AI store, with the facts a caller needs to act on it.

use db_core::{DbError, RetryableError};

use crate::ids::{ConversationId, UserId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AiError {
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("conversation {0} not found")]
    ConversationNotFound(ConversationId),
    #[error("learning example {key:?} was recorded before with other content")]
    ExampleConflict { key: String },
    /// The caller's computation of a missing cache value failed; nothing was stored.
    #[error("computing the cached value failed: {0}")]
    Compute(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Writing an export failed (the destination, not the database).
    #[error("writing the export failed: {0}")]
    Export(#[source] std::io::Error),
    /// The database returned something this version of the crate does not know (a newer
    /// migration applied under an older binary, or a row written by hand).
    #[error("{0}")]
    UnexpectedData(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for AiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(DbError::from(error))
    }
}

impl RetryableError for AiError {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Db(error) if error.is_retryable())
    }
}

impl AiError {
    /// `error` as [`AiError::UserNotFound`] when it is the foreign key from one of the
    /// schema's tables to `public.users`: the user does not exist (or was just deleted).
    pub(crate) fn or_unknown_user(error: sqlx::Error, user: UserId) -> Self {
        let error = DbError::from(error);
        match &error {
            DbError::ForeignKeyViolation { constraint, .. }
                if constraint.ends_with("_user_id_fkey") =>
            {
                Self::UserNotFound(user)
            }
            _ => Self::Db(error),
        }
    }
}
