//! The connection pools: one to the primary, optionally one to a read replica, which reads
//! use only while it answers and keeps up ([`crate::replica`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgPool, Postgres, Transaction};

use crate::config::DbConfig;
use crate::error::DbError;
use crate::pooling::{Pooling, Unit, begin_statement, pooled_options};
use crate::replica::ReplicaState;

/// The pools a data crate works with. Cheap to clone: clones share the pools.
///
/// Statements go through [`unit`](Self::unit) or [`begin`](Self::begin), never straight to a
/// pool, so that they stay correct behind a pooler in transaction mode
/// ([`crate::pooling`]).
#[derive(Debug, Clone)]
pub struct Db {
    primary: PgPool,
    replica: Option<Replica>,
    /// Behind a pooler in transaction mode, the statement every transaction begins with.
    begin: Option<Arc<str>>,
    /// Where session-bound work connects, acting as the pools' role.
    session: Arc<PgConnectOptions>,
    /// Connections of `session` (the primary pool itself when its connections are sessions).
    session_pool: PgPool,
}

#[derive(Debug, Clone)]
struct Replica {
    pool: PgPool,
    state: Arc<ReplicaState>,
}

impl Db {
    /// Opens the pools of `config`, which must name a server (`url`). One connection to each
    /// server is opened at once, so a wrong address or password fails here with a classified
    /// [`DbError`] rather than on the first query.
    pub async fn connect(config: &DbConfig) -> Result<Self, DbError> {
        let primary = config
            .primary_options()?
            .ok_or_else(|| DbError::InvalidConfig {
                message: "no database url configured".into(),
            })?;
        Self::connect_with(config, primary).await
    }

    /// Opens the pools with explicit primary options (for example those of the embedded
    /// cluster); the replica, pool sizes and timeouts still come from `config`.
    pub async fn connect_with(
        config: &DbConfig,
        primary: PgConnectOptions,
    ) -> Result<Self, DbError> {
        Self::connect_acting_as(config, primary, None).await
    }

    /// [`connect_with`](Self::connect_with), every connection of both pools (the primary's
    /// and the replica's) acting as `role` when one is given (see [`acting_as`]).
    pub async fn connect_acting_as(
        config: &DbConfig,
        primary: PgConnectOptions,
        role: Option<&str>,
    ) -> Result<Self, DbError> {
        let as_role = |options: PgConnectOptions| match role {
            Some(role) => acting_as(options, role),
            None => options,
        };
        let pooled = config.pooling == Pooling::Transaction;
        // On a session the role and the settings come with the startup packet; behind a
        // pooler in transaction mode, with each transaction's BEGIN.
        let prepare = |options: PgConnectOptions| {
            if pooled {
                pooled_options(options, &config.application_name)
            } else {
                as_role(config.apply_session_settings(options))
            }
        };
        let begin = pooled.then(|| {
            Arc::from(begin_statement(
                role,
                config.statement_timeout.map(|timeout| timeout.as_millis()),
            ))
        });
        let session = if pooled {
            config
                .session_options()?
                .ok_or_else(|| DbError::InvalidConfig {
                    message: "pooling = \"transaction\" needs a session_url".into(),
                })?
        } else {
            primary.clone()
        };
        let session = Arc::new(as_role(config.apply_session_settings(session)));
        if config.max_connections == 0 || config.min_connections > config.max_connections {
            return Err(DbError::InvalidConfig {
                message: format!(
                    "pool bounds must satisfy 0 <= min_connections <= max_connections and \
                     max_connections > 0 (got min {} and max {})",
                    config.min_connections, config.max_connections
                ),
            });
        }
        let primary = open_pool(config, prepare(primary)).await?;
        let replica = match config.replica_options()? {
            Some(options) => {
                // Opened lazily: a replica that is down or behind at start (it may not have
                // replayed the roles a migration just created) must not stop the server;
                // until the monitor finds it usable, reads go to the primary.
                let pool = pool_options(config).connect_lazy_with(prepare(options));
                let state = crate::replica::spawn_monitor(
                    primary.clone(),
                    pool.clone(),
                    config.replica_max_lag,
                );
                Some(Replica { pool, state })
            }
            None => None,
        };
        let session_pool = if pooled {
            // Opened on first use: only LISTEN takes one, and keeps it.
            pool_options(config)
                .min_connections(0)
                .max_connections(SESSION_CONNECTIONS)
                .connect_lazy_with(session.as_ref().clone())
        } else {
            primary.clone()
        };
        Ok(Self {
            primary,
            replica,
            begin,
            session,
            session_pool,
        })
    }

    /// Wraps an existing pool of sessions (tests, or a service that manages its own pool).
    pub fn from_pool(primary: PgPool) -> Self {
        let session = Arc::new(primary.connect_options().as_ref().clone());
        Self {
            session_pool: primary.clone(),
            primary,
            replica: None,
            begin: None,
            session,
        }
    }

    /// A transaction on the primary, for writes and for reads that must agree with each other.
    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, DbError> {
        Ok(match &self.begin {
            None => self.primary.begin().await?,
            Some(begin) => {
                self.primary
                    .begin_with(AssertSqlSafe(begin.clone()))
                    .await?
            }
        })
    }

    /// A connection of `pool` (one of this `Db`'s: [`primary`](Self::primary),
    /// [`read`](Self::read), [`read_as_of`](Self::read_as_of)) for a read or a self-contained
    /// statement; behind a pooler in transaction mode, a transaction. End it with
    /// [`Unit::finish`].
    pub async fn unit(&self, pool: &PgPool) -> Result<Unit, DbError> {
        Unit::on(pool, self.begin.as_ref()).await
    }

    /// The statement that begins every transaction behind a pooler in transaction mode (the
    /// part's role and the statement timeout), for connections opened outside the pools
    /// ([`DirectPool`](crate::DirectPool)); `None` on sessions.
    pub fn begin_statement(&self) -> Option<&str> {
        self.begin.as_deref()
    }

    /// Options for a connection that keeps a session of its own (an advisory lock held
    /// across transactions, `LISTEN`): `session_url` behind a pooler in transaction mode, the
    /// pools' server otherwise; acting as the pools' role either way.
    pub fn session_options(&self) -> &PgConnectOptions {
        &self.session
    }

    /// A pool of such sessions (for `PgListener::connect_with`): the primary pool when its
    /// connections are sessions, else a small one on `session_url`.
    pub fn session_pool(&self) -> &PgPool {
        &self.session_pool
    }

    /// The pool for writes and for reads that must see the latest committed state.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// The pool for reads that tolerate replication lag: the replica while it answers and was
    /// at most `replica_max_lag` behind at its last check (a second ago at most), else the
    /// primary. A read that must see the caller's own write goes to [`primary`](Self::primary).
    pub fn read(&self) -> &PgPool {
        match &self.replica {
            Some(replica) if replica.state.usable() => &replica.pool,
            _ => &self.primary,
        }
    }

    /// The pool for a read of data as it was `age` ago (a balance at a past moment): the
    /// replica when [`read`](Self::read) would use it and `age` exceeds what the replica can
    /// lack (`replica_max_lag` at the last check, plus the checks' interval twice), so that the
    /// replica surely holds it; else the primary. Such a read is exact, not merely lag-tolerant.
    pub fn read_as_of(&self, age: Duration) -> &PgPool {
        match &self.replica {
            Some(replica) if age > replica.state.horizon() => self.read(),
            _ => &self.primary,
        }
    }

    /// Whether [`read`](Self::read) goes to the replica now.
    pub fn reads_from_replica(&self) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|replica| replica.state.usable())
    }

    /// How far the replica was behind the primary at its last check (checked every second);
    /// `None` without a replica, or when it could not be told (down, or further behind than
    /// the monitor's samples reach: `replica_max_lag` and two checks).
    pub fn replica_lag(&self) -> Option<Duration> {
        self.replica
            .as_ref()
            .and_then(|replica| replica.state.lag())
    }

    /// The primary pool's connections now (for metrics).
    pub fn usage(&self) -> crate::PoolUsage {
        usage_of(&self.primary)
    }

    /// The replica pool's connections now, when there is one.
    pub fn replica_usage(&self) -> Option<crate::PoolUsage> {
        self.replica.as_ref().map(|replica| usage_of(&replica.pool))
    }

    /// Whether a read replica is configured.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Answers whether the primary accepts a query right now.
    pub async fn ping(&self) -> Result<(), DbError> {
        // The simple protocol: one message, safe behind a pooler in transaction mode.
        sqlx::raw_sql("SELECT 1").execute(&self.primary).await?;
        Ok(())
    }

    /// Waits for checked-out connections to return, then closes every connection.
    pub async fn close(&self) {
        self.primary.close().await;
        self.session_pool.close().await;
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
    }
}

/// Sessions of a pool behind a pooler in transaction mode, at most: a listener keeps one.
const SESSION_CONNECTIONS: u32 = 2;

async fn open_pool(config: &DbConfig, options: PgConnectOptions) -> Result<PgPool, DbError> {
    // A pool retries failed connection attempts until its acquire timeout and then reports
    // only "timed out". One direct connection first turns a wrong address, password or
    // database name into a precise error at once.
    let probe = crate::target::connect(&options).await?;
    probe.close().await?;
    Ok(pool_options(config).connect_with(options).await?)
}

fn pool_options(config: &DbConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        // sqlx pings every connection it hands out unless told not to: a round trip per
        // query (its cost is in docs/benchmarks.md). A connection that broke
        // while idle fails its next query as ConnectionLost instead, which callers retry.
        .test_before_acquire(false)
        .min_connections(config.min_connections)
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
}

/// `options` for connections that act as `role` from their first statement (`SET ROLE` sent
/// with the startup packet; the login must be a member of the role). A binary that embeds
/// several crates gives each its schema owner's role, so that each crate's statements have
/// that schema's rights and no more.
pub fn acting_as(options: PgConnectOptions, role: &str) -> PgConnectOptions {
    options.options([("role", role)])
}

/// `host:port/database` or `socket-dir:port/database`: where a connection goes, without
/// credentials, for error messages and logs.
pub fn describe_target(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket_dir) => socket_dir.display().to_string(),
        None => options.get_host().to_owned(),
    };
    let database = options.get_database().unwrap_or(options.get_username());
    format!("{host}:{}/{database}", options.get_port())
}

fn usage_of(pool: &PgPool) -> crate::PoolUsage {
    let open = pool.size() as usize;
    let idle = pool.num_idle().min(open);
    crate::PoolUsage {
        in_use: open - idle,
        idle,
        max: pool.options().get_max_connections() as usize,
    }
}
