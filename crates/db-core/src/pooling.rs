//! Working through a connection pooler in transaction mode (PgBouncer `pool_mode =
//! transaction`), where a server connection is lent for one transaction at a time.
//!
//! Three things a direct connection gives for free are then gone, and this module is how the
//! data crates do without them:
//!
//! - **Statements outside a transaction are unsafe.** sqlx parses a statement, then sends a
//!   `Sync` and waits for its description before it binds the arguments; at that `Sync` the
//!   server is idle, the pooler lends it to another client, and the `Bind` lands on a server
//!   whose unnamed statement is someone else's: a wrong answer with no error
//!   (docs/scaling.md). Inside `BEGIN` ... `COMMIT` the server stays with the client. So every
//!   statement on a pooled URL runs in a transaction: [`Db::begin`](crate::Db::begin) for
//!   writes, [`Unit`] for reads and self-contained statements.
//! - **Session state does not stay.** A part's role and the statement timeout cannot come in the
//!   startup packet (PgBouncer refuses its `options`), so each transaction starts with
//!   `SET LOCAL` of both, in the `BEGIN`'s round trip
//!   ([`Db::begin_statement`](crate::Db::begin_statement)).
//! - **Named prepared statements clash** (they belong to a server connection, not to the
//!   client): the statement cache is off on pooled connections.
//!
//! What must keep a session (advisory locks held across transactions, `LISTEN`) connects to
//! `database.session_url` instead ([`crate::Db::session_options`]).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};

use crate::error::DbError;

/// How the connections of `database.url` (and `replica_url`) reach PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Each connection is a session of its own with PostgreSQL itself: the role and the
    /// settings come in its startup packet.
    #[default]
    Session,
    /// A pooler (PgBouncer, meant for transaction mode; it refuses the startup packet's
    /// `options` in any mode): every statement runs in a transaction that starts by taking the
    /// part's role and the statement timeout; session-bound work goes to `session_url`.
    Transaction,
}

/// Connect options for a pooler in transaction mode: no startup `options` are added (PgBouncer
/// refuses them), no `extra_float_digits` (refused unless the pooler is told to ignore it), no
/// named statements.
pub(crate) fn pooled_options(
    options: PgConnectOptions,
    application_name: &str,
) -> PgConnectOptions {
    options
        .application_name(application_name)
        .statement_cache_capacity(0)
        .extra_float_digits(None)
}

/// The `BEGIN` of every transaction on a pooled connection: the part's role and the statement
/// timeout for this transaction, sent in one round trip with the `BEGIN` itself.
pub(crate) fn begin_statement(role: Option<&str>, statement_timeout_ms: Option<u128>) -> String {
    let mut statement = String::from("BEGIN");
    if let Some(role) = role {
        statement.push_str("; SET LOCAL ROLE ");
        statement.push_str(&crate::target::quote_identifier(role));
    }
    if let Some(timeout) = statement_timeout_ms {
        statement.push_str(&format!("; SET LOCAL statement_timeout = '{timeout}ms'"));
    }
    statement
}

/// Statements that must meet one server session: a connection of the pool when connections are
/// sessions, a transaction (begun by [`Db::begin_statement`](crate::Db::begin_statement))
/// behind a pooler in transaction mode. [`finish`](Self::finish) commits that transaction;
/// dropped unfinished, it rolls back.
pub struct Unit {
    inner: UnitInner,
}

enum UnitInner {
    Session(PoolConnection<Postgres>),
    Pooled(Transaction<'static, Postgres>),
}

impl Unit {
    pub(crate) async fn on(pool: &PgPool, begin: Option<&Arc<str>>) -> Result<Self, DbError> {
        let inner = match begin {
            None => UnitInner::Session(pool.acquire().await?),
            // Built from the configured role and timeout only (begin_statement).
            Some(begin) => UnitInner::Pooled(pool.begin_with(AssertSqlSafe(begin.clone())).await?),
        };
        Ok(Self { inner })
    }

    /// Ends the unit: commits its transaction behind a pooler (a failed commit is an error
    /// here, before the caller reports success), returns the connection otherwise.
    pub async fn finish(self) -> Result<(), DbError> {
        if let UnitInner::Pooled(transaction) = self.inner {
            transaction.commit().await?;
        }
        Ok(())
    }
}

impl Deref for Unit {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.inner {
            UnitInner::Session(connection) => connection,
            UnitInner::Pooled(transaction) => transaction,
        }
    }
}

impl DerefMut for Unit {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.inner {
            UnitInner::Session(connection) => connection,
            UnitInner::Pooled(transaction) => transaction,
        }
    }
}
