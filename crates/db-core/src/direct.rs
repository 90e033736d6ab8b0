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
//! state (a transaction, `SET`, a temporary table) belongs on the regular pool.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;
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
    size: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<PgConnection>>,
    acquire_timeout: Duration,
}

impl DirectPool {
    pub fn new(options: PgConnectOptions, size: usize, acquire_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
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
