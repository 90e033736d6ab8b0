//! Classification of database failures into what a caller must act on.
//!
//! sqlx reports a database error as a code and a message; callers should not have to know
//! SQLSTATE codes. [`DbError`] names the cases that change what a caller does next (retry,
//! report a conflict, report bad input, give up) and keeps the original error as its source.

use sqlx::error::DatabaseError;

/// A database failure, classified. Every variant keeps the sqlx error it came from as its
/// `source`, so logs carry the whole chain; `Display` never includes row data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A check constraint refused the write (SQLSTATE 23514). `field` is the column it
    /// guards, read from the schema's naming of checks (`<table>_<column>_<rule>`, see
    /// [`checked_column`]); `None` for a check over a whole row.
    #[error("check constraint {constraint} violated")]
    CheckViolation {
        constraint: String,
        field: Option<String>,
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
    #[error(
        "serialization failure; the transaction can be retried ({})",
        detail(source)
    )]
    SerializationFailure {
        #[source]
        source: sqlx::Error,
    },
    /// The transaction was chosen as a deadlock victim (SQLSTATE 40P01). Retry it whole.
    #[error(
        "deadlock detected; the transaction can be retried ({})",
        detail(source)
    )]
    Deadlock {
        #[source]
        source: sqlx::Error,
    },
    /// `statement_timeout` or a cancel request ended the statement (SQLSTATE 57014).
    #[error("statement cancelled or timed out ({})", detail(source))]
    StatementTimeout {
        #[source]
        source: sqlx::Error,
    },
    /// `lock_timeout` expired or `NOWAIT` found the row locked (SQLSTATE 55P03).
    #[error("lock not available ({})", detail(source))]
    LockNotAvailable {
        #[source]
        source: sqlx::Error,
    },
    /// The role lacks a privilege on the object (SQLSTATE 42501).
    #[error("permission denied ({})", detail(source))]
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
    #[error("lost the connection to the database ({source})")]
    ConnectionLost {
        #[source]
        source: sqlx::Error,
    },
    /// The TLS handshake failed or could not start: the server offers no TLS where the URL's
    /// `sslmode` requires it, or its certificate is not trusted (`sslrootcert`) or not for
    /// the host name (`verify-full`). The source says which.
    #[error("TLS with PostgreSQL at {target} failed: {source}")]
    TlsFailed {
        target: String,
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
    #[error("database error ({})", detail(source))]
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
            _ if is_tls_failure(&error) => Self::TlsFailed {
                target: target.into(),
                source: error,
            },
            _ if matches!(error, sqlx::Error::Io(_)) => Self::Unreachable {
                target: target.into(),
                source: error,
            },
            _ => Self::from(error),
        }
    }
}

/// What the database said, for messages: its own words and the SQLSTATE (`permission denied
/// for table balances, SQLSTATE 42501`), or what failed beneath it. Logged errors then say
/// what failed without a walk down their sources.
fn detail(source: &sqlx::Error) -> String {
    match source.as_database_error() {
        Some(database) => match database.code() {
            Some(code) => format!("{}, SQLSTATE {code}", database.message()),
            None => database.message().to_owned(),
        },
        None => source.to_string(),
    }
}

/// A TLS failure: sqlx's own (no TLS where required) or the handshake's, which sqlx hands on
/// as an I/O error carrying the rustls error (an unknown issuer, a name the certificate is
/// not for, ...).
fn is_tls_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
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
    Check {
        constraint: String,
        field: Option<String>,
    },
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
            Kind::Check { constraint, field } => DbError::CheckViolation {
                constraint,
                field,
                source,
            },
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
        "23514" => {
            let constraint = constraint();
            let table = error
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.table());
            let field = table
                .and_then(|table| checked_column(table, &constraint))
                .map(str::to_owned);
            Kind::Check { constraint, field }
        }
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

/// What the schema's check constraints are named after, behind `<table>_<column>_`.
const CHECK_RULES: [&str; 10] = [
    "_not_negative",
    "_positive",
    "_length",
    "_format",
    "_known",
    "_range",
    "_object",
    "_iso",
    "_given",
    "_code",
];

/// The column a check constraint of `table` guards, from its name: the migrations name a
/// column's checks `<table>_<column>_<rule>` (`users_email_format`), so that a refused value
/// can be reported by the field the caller sent. `None` for checks over a whole row
/// (`fodi_transactions_well_formed`).
pub fn checked_column<'a>(table: &str, constraint: &'a str) -> Option<&'a str> {
    let rest = constraint.strip_prefix(table)?.strip_prefix('_')?;
    CHECK_RULES
        .iter()
        .find_map(|rule| rest.strip_suffix(rule))
        .filter(|column| !column.is_empty())
}

#[cfg(test)]
mod tests {
    use super::checked_column;

    #[test]
    fn a_column_check_names_its_column_and_a_row_check_nothing() {
        assert_eq!(checked_column("users", "users_email_format"), Some("email"));
        assert_eq!(
            checked_column(
                "conversation_messages",
                "conversation_messages_token_count_not_negative"
            ),
            Some("token_count")
        );
        assert_eq!(
            checked_column("wallets", "wallets_asset_code"),
            Some("asset")
        );
        assert_eq!(
            checked_column("fodi_transactions", "fodi_transactions_well_formed"),
            None
        );
        assert_eq!(checked_column("balances", "users_email_format"), None);
    }

    /// Every check of the migrations names a column, or nothing: a check whose name broke the
    /// convention would send the caller a wrong field.
    #[test]
    fn the_schema_s_checks_follow_the_naming_errors_rely_on() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut sql = String::new();
        for set in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(set.unwrap().path()).unwrap() {
                sql.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
            }
        }
        let tables: Vec<&str> = sql
            .split("CREATE TABLE ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|name| name.rsplit('.').next().unwrap_or(name))
            .collect();
        let columns: Vec<&str> = sql
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .filter_map(|definition| definition.split_whitespace().next())
            .collect();
        let mut named = 0;
        for rest in sql.split("CONSTRAINT ").skip(1) {
            let mut words = rest.split_whitespace();
            let (Some(constraint), Some("CHECK")) = (words.next(), words.next()) else {
                continue;
            };
            // The longest table name the constraint starts with (`conversation_messages`
            // before `conversations`).
            let table = tables
                .iter()
                .filter(|table| constraint.starts_with(&format!("{table}_")))
                .max_by_key(|table| table.len())
                .unwrap_or_else(|| panic!("{constraint}: no table of that name"));
            if let Some(column) = checked_column(table, constraint) {
                named += 1;
                // The field as callers know it: the column, or the column without its unit or
                // scope (`price` for `price_cents`, `key` for `cache_key`).
                let guards_a_column = columns.iter().any(|name| {
                    *name == column
                        || name.starts_with(&format!("{column}_"))
                        || name.ends_with(&format!("_{column}"))
                });
                assert!(guards_a_column, "{constraint}: no column {column}");
            }
        }
        assert!(named > 30, "{named} checks named a column");
    }
}
