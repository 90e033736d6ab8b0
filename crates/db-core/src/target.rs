//! Choosing the database a binary works on: the configured server, or the embedded cluster.

use std::sync::atomic::Ordering;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::cluster::{LocalCluster, LocalClusterConfig};
use crate::config::DbConfig;
use crate::db::describe_target;
use crate::error::DbError;

/// Name of the application database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "fodi";

/// The database a binary was configured for. When it is the embedded cluster, `cluster`
/// holds it: dropping the target stops the server if this process started it.
#[derive(Debug)]
pub struct DatabaseTarget {
    /// Where the pools connect (`url`).
    pub options: PgConnectOptions,
    /// Where work that needs a session of its own connects: `session_url`, else `url`.
    pub session: PgConnectOptions,
    pub cluster: Option<LocalCluster>,
}

impl DatabaseTarget {
    /// The server of `config.url`, or, with no url, the embedded cluster under
    /// `config.local_dir`, started (or attached to) and holding a database named
    /// [`EMBEDDED_DATABASE`], created on first use.
    pub async fn resolve(config: &DbConfig) -> Result<Self, DbError> {
        if let Some(options) = config.primary_options()? {
            let session = config.session_options()?.unwrap_or_else(|| options.clone());
            return Ok(Self {
                options,
                session,
                cluster: None,
            });
        }
        let cluster = LocalCluster::start(LocalClusterConfig::new(&config.local_dir)).await?;
        create_database_if_missing(&cluster.connect_options("postgres"), EMBEDDED_DATABASE).await?;
        let options = cluster.connect_options(EMBEDDED_DATABASE);
        Ok(Self {
            session: options.clone(),
            options,
            cluster: Some(cluster),
        })
    }

    /// Where connections go, without credentials: for logs and messages.
    pub fn describe(&self) -> String {
        describe_target(&self.options)
    }

    /// Whether the database runs on this machine (the embedded cluster, a Unix socket or a
    /// loopback address), where it takes its share of the cores: a server sizes its threads
    /// by it.
    pub fn is_on_this_host(&self) -> bool {
        let host = self.options.get_host();
        self.cluster.is_some()
            || self.options.get_socket().is_some()
            || host.starts_with('/')
            || host == "localhost"
            || (host.trim_start_matches('[').trim_end_matches(']'))
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }

    /// One connection of its own, outside any pool, to the session endpoint (for migrations,
    /// which hold a session lock).
    pub async fn connect(&self) -> Result<PgConnection, DbError> {
        connect(&self.session).await
    }
}

/// Opens one connection, classifying failures to connect (unreachable, TLS, bad credentials,
/// missing database) separately from failures of an established connection. Every pool opens
/// one through here first, and the migrator connects through here.
pub async fn connect(options: &PgConnectOptions) -> Result<PgConnection, DbError> {
    let mut connection = options.connect().await.map_err(|error| {
        DbError::from_connect(
            error,
            &describe_target(options),
            options.get_username(),
            options.get_database().unwrap_or(options.get_username()),
        )
    })?;
    warn_if_unencrypted(&mut connection, options).await?;
    Ok(connection)
}

/// With `sslmode=prefer` (sqlx's default) a server without TLS gets a plaintext connection
/// silently: say so, once per process, so that a URL missing `sslmode=require` is noticed.
/// A Unix socket never carries TLS and needs none.
async fn warn_if_unencrypted(
    connection: &mut PgConnection,
    options: &PgConnectOptions,
) -> Result<(), DbError> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let may_be_plaintext = matches!(options.get_ssl_mode(), PgSslMode::Prefer | PgSslMode::Allow);
    if !may_be_plaintext || options.get_socket().is_some() || WARNED.load(Ordering::Relaxed) {
        return Ok(());
    }
    // The simple protocol: safe behind a pooler in transaction mode (crate::pooling).
    let encrypted: Option<bool> =
        sqlx::raw_sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(connection)
            .await?
            .map(|row| sqlx::Row::try_get(&row, 0))
            .transpose()?;
    if encrypted != Some(true) && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target = %describe_target(options),
            "the connection to PostgreSQL is not encrypted: the server offers no TLS and \
             sslmode is prefer; set sslmode=require (or verify-full) in the database URL to \
             refuse plaintext"
        );
    }
    Ok(())
}

/// Creates `database` unless it exists. Tolerates another process creating it at the same
/// moment (SQLSTATE 42P04).
pub async fn create_database_if_missing(
    admin: &PgConnectOptions,
    database: &str,
) -> Result<(), DbError> {
    let mut connection = connect(admin).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await?;
    if !exists {
        let create = format!("CREATE DATABASE {}", quote_identifier(database));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut connection)
            .await
        {
            Ok(_) => {}
            Err(error)
                if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P04") => {
            }
            Err(error) => return Err(error.into()),
        }
    }
    connection.close().await?;
    Ok(())
}

/// Quotes an identifier for SQL, doubling embedded quotes.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> DatabaseTarget {
        let options: PgConnectOptions = url.parse().unwrap();
        DatabaseTarget {
            session: options.clone(),
            options,
            cluster: None,
        }
    }

    #[test]
    fn a_database_on_this_host_is_told_from_a_remote_one() {
        for local in [
            "postgres://app@localhost/fodi",
            "postgres://app@127.0.0.1:6432/fodi",
            "postgres://app@[::1]/fodi",
            "postgres:///fodi?host=/var/run/postgresql",
        ] {
            assert!(target(local).is_on_this_host(), "{local}");
        }
        for remote in [
            "postgres://app@db.internal/fodi",
            "postgres://app@10.0.0.7/fodi",
        ] {
            assert!(!target(remote).is_on_this_host(), "{remote}");
        }
    }
}
