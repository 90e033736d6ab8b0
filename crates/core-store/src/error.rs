//! What can go wrong with users.

use db_core::DbError;

use crate::UserId;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// A field breaks the schema's rule; `reason` says which.
    #[error("{field} is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    /// Another user has that e-mail address.
    #[error("a user with that e-mail exists")]
    EmailTaken,
    #[error("user {0} not found")]
    NotFound(UserId),
    #[error(transparent)]
    Db(#[from] DbError),
}
