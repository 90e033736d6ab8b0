//! Classification of database failures into what a caller must act on.
//!
//! sqlx reports a database error as a code and a message; callers should not have to know
//! SQLSTATE codes. [`DbError`] names the cases that change what a caller does next (retry,
//! report a conflict, report bad input, give up) and keeps the original error as its source.

use sqlx::error::DatabaseError;

/// A database failure, classified. Every variant keeps the sqlx error it came from as its
/// `source`, so logs carry the whole chain; `Display` never includes row data.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique or primary-key constraint refused the write (SQLSTATE 23505).
    #[error("unique constraint {constraint} violated")]
    UniqueViolation {
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    /// A foreign key refused the write: the referenced row does not exist, or is still
    /// referenced (SQLSTATE 23503).
    #[error("foreign key {constraint} violated")]
    ForeignKeyViolation {
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    /// A check constraint refused the write (SQLSTATE 23514).
    #[error("check constraint {constraint} violated")]
    CheckViolation {
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    /// A required column was null (SQLSTATE 23502).
    #[error("column {column} may not be null")]
    NotNullViolation {
        column: String,
        #[source]
        source: sqlx::Error,
    },
    /// A value was out of range for its type, e.g. a bigint overflow (SQLSTATE 22003).
    #[error("numeric value out of range")]
    NumericOutOfRange {
        #[source]
        source: sqlx::Error,
    },
    /// The transaction lost a serialisation conflict (SQLSTATE 40001). Retry it whole.
    #[error("serialization failure; the transaction can be retried")]
    SerializationFailure {
        #[source]
        source: sqlx::Error,
    },
    /// The transaction was chosen as a deadlock victim (SQLSTATE 40P01). Retry it whole.
    #[error("deadlock detected; the transaction can be retried")]
    Deadlock {
        #[source]
        source: sqlx::Error,
    },
    /// `statement_timeout` or a cancel request ended the statement (SQLSTATE 57014).
    #[error("statement cancelled or timed out")]
    StatementTimeout {
        #[source]
        source: sqlx::Error,
    },
    /// `lock_timeout` expired or `NOWAIT` found the row locked (SQLSTATE 55P03).
    #[error("lock not available")]
    LockNotAvailable {
        #[source]
        source: sqlx::Error,
    },
    /// The role lacks a privilege on the object (SQLSTATE 42501).
    #[error("permission denied")]
    PermissionDenied {
        #[source]
        source: sqlx::Error,
    },
    /// No connection became free within the pool's acquire timeout: the database is
    /// saturated or connections leak. Retrying at once makes it worse.
    #[error("timed out waiting for a database connection from the pool")]
    PoolTimedOut,
    /// The pool was closed (the application is shutting down).
    #[error("the database pool is closed")]
    PoolClosed,
    /// The connection broke mid-flight: network failure, server restart, administrator
    /// termination. Whether the last statement took effect is unknown; only operations that
    /// are idempotent may be retried.
    #[error("lost the connection to the database")]
    ConnectionLost {
        #[source]
        source: sqlx::Error,
    },
    /// The server could not be reached at all (refused, no such host or socket).
    #[error("cannot reach PostgreSQL at {target}")]
    Unreachable {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// The server rejected the role or its password (SQLSTATE 28000, 28P01).
    #[error("PostgreSQL rejected the credentials of role {user} at {target}")]
    AuthenticationFailed {
        user: String,
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database named in the URL does not exist (SQLSTATE 3D000).
    #[error("database {database} does not exist at {target}")]
    DatabaseMissing {
        database: String,
        target: String,
        #[source]
        source: sqlx::Error,
    },
    /// A query expected a row and found none.
    #[error("no row found")]
    RowNotFound,
    /// The embedded cluster could not be started.
    #[error(transparent)]
    LocalCluster(#[from] crate::cluster::ClusterError),
    /// The settings cannot work (bad URL, impossible pool bounds).
    #[error("invalid database configuration: {message}")]
    InvalidConfig { message: String },
    /// Anything else: a bug in a query, a protocol error, a failure we do not classify.
    #[error("database error")]
    Other {
        #[source]
        source: sqlx::Error,
    },
}

impl DbError {
    /// Whether running the same transaction again may succeed: serialisation failures,
    /// deadlocks and lost connections. A lost connection is only safe to retry for idempotent
    /// work; every write path of this workspace is (client-chosen ids, upserts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::SerializationFailure { .. } | Self::Deadlock { .. } | Self::ConnectionLost { .. }
        )
    }

    /// The constraint behind a unique, foreign-key or check violation.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Self::UniqueViolation { constraint, .. }
            | Self::ForeignKeyViolation { constraint, .. }
            | Self::CheckViolation { constraint, .. } => Some(constraint),
            _ => None,
        }
    }

    /// The SQLSTATE of the underlying database error, if there is one.
    pub fn sqlstate(&self) -> Option<String> {
        use std::error::Error as _;
        let source = self.source()?.downcast_ref::<sqlx::Error>()?;
        source
            .as_database_error()?
            .code()
            .map(|code| code.into_owned())
    }

    /// Classifies an error raised while opening a connection to `target` (a redacted
    /// description of the server), where "refused" means unreachable rather than lost.
    pub fn from_connect(error: sqlx::Error, target: &str, user: &str, database: &str) -> Self {
        let code = error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        match code.as_deref() {
            Some("28000" | "28P01") => Self::AuthenticationFailed {
                user: user.into(),
                target: target.into(),
                source: error,
            },
            Some("3D000") => Self::DatabaseMissing {
                database: database.into(),
                target: target.into(),
                source: error,
            },
            _ if matches!(error, sqlx::Error::Io(_) | sqlx::Error::Tls(_)) => Self::Unreachable {
                target: target.into(),
                source: error,
            },
            _ => Self::from(error),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database_error) => {
                match classify_database_error(&**database_error) {
                    Some(kind) => kind.with_source(error),
                    None => Self::Other { source: error },
                }
            }
            sqlx::Error::PoolTimedOut => Self::PoolTimedOut,
            sqlx::Error::PoolClosed => Self::PoolClosed,
            sqlx::Error::RowNotFound => Self::RowNotFound,
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                Self::ConnectionLost { source: error }
            }
            _ => Self::Other { source: error },
        }
    }
}

/// The classification of a server-reported error, before the sqlx error is moved into it.
enum Kind {
    Unique(String),
    ForeignKey(String),
    Check(String),
    NotNull(String),
    NumericOutOfRange,
    Serialization,
    Deadlock,
    StatementTimeout,
    LockNotAvailable,
    PermissionDenied,
    ConnectionLost,
}

impl Kind {
    fn with_source(self, source: sqlx::Error) -> DbError {
        match self {
            Kind::Unique(constraint) => DbError::UniqueViolation { constraint, source },
            Kind::ForeignKey(constraint) => DbError::ForeignKeyViolation { constraint, source },
            Kind::Check(constraint) => DbError::CheckViolation { constraint, source },
            Kind::NotNull(column) => DbError::NotNullViolation { column, source },
            Kind::NumericOutOfRange => DbError::NumericOutOfRange { source },
            Kind::Serialization => DbError::SerializationFailure { source },
            Kind::Deadlock => DbError::Deadlock { source },
            Kind::StatementTimeout => DbError::StatementTimeout { source },
            Kind::LockNotAvailable => DbError::LockNotAvailable { source },
            Kind::PermissionDenied => DbError::PermissionDenied { source },
            Kind::ConnectionLost => DbError::ConnectionLost { source },
        }
    }
}

fn classify_database_error(error: &dyn DatabaseError) -> Option<Kind> {
    let code = error.code()?;
    let constraint = || error.constraint().unwrap_or("<unnamed>").to_owned();
    let kind = match code.as_ref() {
        "23505" => Kind::Unique(constraint()),
        "23503" => Kind::ForeignKey(constraint()),
        "23514" => Kind::Check(constraint()),
        "23502" => Kind::NotNull(not_null_column(error)),
        "22003" => Kind::NumericOutOfRange,
        "40001" => Kind::Serialization,
        "40P01" => Kind::Deadlock,
        "57014" => Kind::StatementTimeout,
        "55P03" => Kind::LockNotAvailable,
        "42501" => Kind::PermissionDenied,
        // Class 08 (connection exception) and the administrator/crash shutdowns of class 57P.
        code if code.starts_with("08") => Kind::ConnectionLost,
        "57P01" | "57P02" | "57P03" => Kind::ConnectionLost,
        _ => return None,
    };
    Some(kind)
}

fn not_null_column(error: &dyn DatabaseError) -> String {
    error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.column())
        .unwrap_or("<unknown>")
        .to_owned()
}
