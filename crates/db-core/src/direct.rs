//! A lean pool of connections for hot, self-contained statements.
//!
//! sqlx's pool sends a `Sync` to every connection it takes back (a "ping on release", there to
//! catch connections left mid-protocol by a cancelled query). On a path that runs one short
//! statement per call, that second round trip costs about as much as the statement (the
//! figures are in docs/benchmarks.md). [`DirectPool`] skips it by not guessing: a
//! connection goes back only when the caller says its statement completed
//! ([`DirectConnection::release`]); one dropped without that (an error, a cancelled future)
//! is closed, and a new one is opened on demand.
//!
//! Use it for statements that are transactions of their own. Anything that keeps session
//! state (a transaction, `SET`, a temporary table) belongs on the regular pool. Behind a
//! pooler in transaction mode each statement still needs a transaction around it
//! ([`crate::pooling`]): callers run it in a [`DirectConnection::scope`], which on a session
//! is the connection itself.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::DbError;
use crate::target::connect;

/// Up to `size` connections to one server, opened lazily and kept while they work.
#[derive(Debug, Clone)]
pub struct DirectPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: PgConnectOptions,
    /// Behind a pooler in transaction mode: what each statement's transaction begins with.
    begin: Option<Arc<str>>,
    size: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<PgConnection>>,
    acquire_timeout: Duration,
}

impl DirectPool {
    pub fn new(options: PgConnectOptions, size: usize, acquire_timeout: Duration) -> Self {
        Self::with_begin(options, None, size, acquire_timeout)
    }

    /// A pool to `db`'s primary connecting as its pool does (server, role, settings, pooler
    /// mode), with `db`'s acquire timeout, and `settings` (run-time parameters, from this
    /// code, not from users) on top: in the startup packet of a session, or `SET LOCAL` in
    /// each transaction behind a pooler.
    pub fn on(db: &crate::Db, size: usize, settings: &[(&str, &str)]) -> Self {
        let options = db.primary().connect_options().as_ref().clone();
        let (options, begin) = match db.begin_statement() {
            None if settings.is_empty() => (options, None),
            None => (options.options(settings.iter().copied()), None),
            Some(begin) => {
                let mut begin = begin.to_owned();
                for (name, value) in settings {
                    begin.push_str(&format!("; SET LOCAL {name} = '{value}'"));
                }
                (options, Some(Arc::from(begin)))
            }
        };
        Self::with_begin(
            options,
            begin,
            size,
            db.primary().options().get_acquire_timeout(),
        )
    }

    fn with_begin(
        options: PgConnectOptions,
        begin: Option<Arc<str>>,
        size: usize,
        acquire_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                begin,
                size: size.max(1),
                permits: Arc::new(Semaphore::new(size.max(1))),
                idle: Mutex::new(Vec::with_capacity(size)),
                acquire_timeout,
            }),
        }
    }

    /// A connection, waiting up to the acquire timeout for one to be free.
    pub async fn acquire(&self) -> Result<DirectConnection, DbError> {
        let permit = tokio::time::timeout(
            self.inner.acquire_timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| DbError::PoolTimedOut)?
        .map_err(|_| DbError::PoolClosed)?;
        let idle = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match idle {
            Some(connection) => connection,
            None => connect(&self.inner.options).await?,
        };
        Ok(DirectConnection {
            connection: Some(connection),
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    /// How many connections are open, in use, and allowed (for metrics).
    pub fn usage(&self) -> PoolUsage {
        let idle = self.inner.idle.lock().map_or(0, |idle| idle.len());
        let in_use = self
            .inner
            .size
            .saturating_sub(self.inner.permits.available_permits());
        PoolUsage {
            in_use,
            idle,
            max: self.inner.size,
        }
    }

    /// Closes the idle connections; connections in use close when dropped. For a drop path,
    /// where nothing can be awaited; otherwise prefer [`shutdown`](Self::shutdown).
    pub fn close(&self) {
        self.inner.permits.close();
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }

    /// Takes no more callers and closes the idle connections gracefully (each tells the server
    /// it is leaving, so none shows up as an aborted session in the server's log); those in
    /// use close when their callers drop them.
    pub async fn shutdown(&self) {
        self.inner.permits.close();
        let idle = match self.inner.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => Vec::new(),
        };
        for connection in idle {
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

/// A pool's connections at one moment: `in_use` by callers, open and `idle`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub in_use: usize,
    pub idle: usize,
    pub max: usize,
}

/// A connection taken from a [`DirectPool`]. Call [`release`](Self::release) after a
/// statement completed to give it back; dropping it otherwise closes it.
#[derive(Debug)]
pub struct DirectConnection {
    connection: Option<PgConnection>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl DirectConnection {
    /// Returns the connection to the pool: its last statement completed, so it stands ready.
    pub fn release(mut self) {
        if let (Some(connection), Ok(mut idle)) = (self.connection.take(), self.pool.idle.lock()) {
            idle.push(connection);
        }
    }

    /// This connection for one statement (or a few that belong together): itself on a
    /// session, a transaction begun with the pool's role and settings behind a pooler in
    /// transaction mode. End it with [`Scope::end`] before [`release`](Self::release).
    pub async fn scope(&mut self) -> Result<Scope<'_>, DbError> {
        Ok(match self.pool.begin.clone() {
            None => Scope::Session(self),
            // Built from the configured role and settings only (DirectPool::on).
            Some(begin) => Scope::Pooled(self.begin_with(sqlx::AssertSqlSafe(begin)).await?),
        })
    }
}

/// A [`DirectConnection`] for the statements of one call: see [`DirectConnection::scope`].
/// End it with [`end`](Self::end) before releasing the connection: one dropped unfinished
/// rolls back only with the connection's next statement, and until then keeps its server
/// connection from the pooler's other clients.
pub enum Scope<'c> {
    Session(&'c mut PgConnection),
    Pooled(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// How the statements of a [`Scope`] ended, as [`Scope::end`] needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// They completed: behind a pooler, their transaction is committed.
    Completed,
    /// The server refused one (it answered with an error): the connection is still good.
    Refused,
    /// No answer came (a broken socket, a cancelled call): the connection is not to be reused.
    Broken,
}

impl Ended {
    /// [`Completed`](Self::Completed) for `Ok`; for an error, [`Refused`](Self::Refused)
    /// when `server_answered` says the server sent it, else [`Broken`](Self::Broken).
    pub fn of<T, E>(result: &Result<T, E>, server_answered: impl FnOnce(&E) -> bool) -> Self {
        match result {
            Ok(_) => Self::Completed,
            Err(error) if server_answered(error) => Self::Refused,
            Err(_) => Self::Broken,
        }
    }
}

impl Scope<'_> {
    /// Ends the scope as its statements `ended`: commits behind a pooler what completed (a
    /// failed commit is this call's error), rolls back what was refused. `Ok(true)`: the
    /// connection stands ready for [`DirectConnection::release`]; `Ok(false)`: drop it, which
    /// closes it (a broken one, or one that could not even roll back).
    pub async fn end(self, ended: Ended) -> Result<bool, DbError> {
        match (self, ended) {
            (_, Ended::Broken) => Ok(false),
            (Self::Session(_), _) => Ok(true),
            (Self::Pooled(transaction), Ended::Completed) => {
                transaction.commit().await?;
                Ok(true)
            }
            (Self::Pooled(transaction), Ended::Refused) => Ok(transaction.rollback().await.is_ok()),
        }
    }
}

impl Deref for Scope<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Session(connection) => connection,
            Self::Pooled(transaction) => transaction,
        }
    }
}

impl DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Session(connection) => connection,
            Self::Pooled(transaction) => transaction,
        }
    }
}

impl Deref for DirectConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.connection {
            Some(connection) => connection,
            None => {
                unreachable!("the connection is only taken by release, which consumes the value")
            }
        }
    }
}

impl DerefMut for DirectConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.connection {
            Some(connection) => connection,
            None => {
                unreachable!("the connection is only taken by release, which consumes the value")
            }
        }
    }
}
