//! Typed database settings, deserialised by the binaries from their layered configuration.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

use crate::error::DbError;

/// How to reach PostgreSQL, and how many connections to keep.
///
/// With no `url`, binaries start the embedded [`LocalCluster`](crate::LocalCluster) under
/// `local_dir` instead (see [`DatabaseTarget::resolve`](crate::DatabaseTarget::resolve)).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `postgres://user:password@host:port/database`; a socket directory can be given as
    /// `?host=/path`. `None` means "use the embedded cluster".
    pub url: Option<String>,
    /// How the connections of `url` and `replica_url` reach PostgreSQL: `"session"` (directly)
    /// or `"transaction"` (through a pooler such as PgBouncer, meant for its
    /// `pool_mode = transaction`; see docs/scaling.md).
    pub pooling: crate::pooling::Pooling,
    /// Where work that needs a session of its own connects (migrations and the supervision
    /// election hold advisory locks, the AI cache's in-process tier listens for changes):
    /// PostgreSQL itself (its connections take their role and settings in the startup packet,
    /// which PgBouncer refuses). Defaults to `url`; required with `pooling = "transaction"`.
    pub session_url: Option<String>,
    /// A read replica for queries that tolerate replication lag. `None`: reads go to the primary.
    pub replica_url: Option<String>,
    /// Reads go to the replica only while it is this close behind the primary (and answers);
    /// otherwise to the primary, until it catches up. Checked every second.
    #[serde(with = "humantime_serde")]
    pub replica_max_lag: Duration,
    /// Connections kept open even when idle.
    pub min_connections: u32,
    /// Upper bound of the pool; every connection is a PostgreSQL backend process.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before [`DbError::PoolTimedOut`].
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Server-side cap on a single statement (`statement_timeout`); `None` leaves the server's.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Option<Duration>,
    /// Shown in `pg_stat_activity`, so operators can tell our sessions apart.
    pub application_name: String,
    /// Where the embedded cluster lives when `url` is not set.
    pub local_dir: PathBuf,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: None,
            pooling: crate::pooling::Pooling::Session,
            session_url: None,
            replica_url: None,
            replica_max_lag: Duration::from_secs(5),
            min_connections: 0,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            application_name: "fodi".to_owned(),
            local_dir: PathBuf::from(".data/pg"),
        }
    }
}

impl DbConfig {
    /// Refuses a pool that could never hand out a connection.
    pub fn validate(&self) -> Result<(), crate::settings::InvalidSetting> {
        crate::settings::positive_duration("acquire_timeout", self.acquire_timeout)?;
        crate::settings::positive_duration("replica_max_lag", self.replica_max_lag)?;
        crate::settings::at_least_one("max_connections", u64::from(self.max_connections))?;
        if self.pooling == crate::pooling::Pooling::Transaction && self.session_url.is_none() {
            return Err(crate::settings::InvalidSetting::new(
                "session_url",
                "must name PostgreSQL itself when pooling is \
                 \"transaction\": migrations, the supervision election and the AI cache's \
                 change notifications need a session of their own",
            ));
        }
        Ok(())
    }

    /// A configuration for an explicit server URL, other settings at their defaults.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// This configuration with the password of every URL replaced (for printing it).
    pub fn redacted(&self) -> Self {
        let redact = |url: &Option<String>| url.as_deref().map(redact_url);
        Self {
            url: redact(&self.url),
            session_url: redact(&self.session_url),
            replica_url: redact(&self.replica_url),
            ..self.clone()
        }
    }

    /// Connection options parsed from `url` (session settings are applied by [`Db`](crate::Db)).
    pub fn primary_options(&self) -> Result<Option<PgConnectOptions>, DbError> {
        self.url
            .as_deref()
            .map(|url| self.options_for(url))
            .transpose()
    }

    /// Connection options of `session_url`, or of `url` when it is not set.
    pub fn session_options(&self) -> Result<Option<PgConnectOptions>, DbError> {
        match &self.session_url {
            Some(url) => self.options_for(url).map(Some),
            None => self.primary_options(),
        }
    }

    /// Connection options parsed from `replica_url`, if one is configured.
    pub fn replica_options(&self) -> Result<Option<PgConnectOptions>, DbError> {
        self.replica_url
            .as_deref()
            .map(|url| self.options_for(url))
            .transpose()
    }

    /// Applies this config's session settings (application name, statement timeout).
    pub fn apply_session_settings(&self, options: PgConnectOptions) -> PgConnectOptions {
        let options = options.application_name(&self.application_name);
        match self.statement_timeout {
            Some(timeout) => options.options([(
                "statement_timeout",
                format!("{}ms", timeout.as_millis()).as_str(),
            )]),
            None => options,
        }
    }

    fn options_for(&self, url: &str) -> Result<PgConnectOptions, DbError> {
        url.parse::<PgConnectOptions>()
            .map_err(|source| DbError::InvalidConfig {
                message: format!("database url {} is not valid: {source}", redact_url(url)),
            })
    }
}

/// Secrets never reach logs: URLs are shown with their password replaced.
impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("pooling", &self.pooling)
            .field("session_url", &self.session_url.as_deref().map(redact_url))
            .field("replica_url", &self.replica_url.as_deref().map(redact_url))
            .field("replica_max_lag", &self.replica_max_lag)
            .field("min_connections", &self.min_connections)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("application_name", &self.application_name)
            .field("local_dir", &self.local_dir)
            .finish()
    }
}

/// Replaces the passwords of a `scheme://user:password@host/...?password=...` URL with `***`:
/// the one in the user part and those of the `password` and `sslpassword` parameters.
///
/// The URL is read by the `url` crate, as the driver reads it. One that it cannot read keeps
/// only its scheme, since where its password would be cannot be told; anything that does not
/// look like a URL at all is returned unchanged: it holds no password we could recognise, and
/// mangling it would hide the mistake from its author.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, _)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Ok(mut url) = url::Url::parse(text) else {
        return format!("{scheme}://***");
    };
    if url.password().is_some() {
        // Fails only for URLs that cannot have a password, which this one just showed it has.
        let _ = url.set_password(Some("***"));
    }
    if let Some(query) = url.query() {
        // Parameter by parameter, so that the others keep their spelling.
        let redacted: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((key, _)) if is_password_parameter(parameter) => format!("{key}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        url.set_query(Some(&redacted.join("&")));
    }
    url.into()
}

/// Whether a query parameter holds a password, its name decoded as the driver decodes it
/// (`pass%77ord` is `password`).
fn is_password_parameter(parameter: &str) -> bool {
    url::form_urlencoded::parse(parameter.as_bytes())
        .next()
        .is_some_and(|(key, _)| matches!(key.as_ref(), "password" | "sslpassword"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_only_the_passwords() {
        assert_eq!(
            redact_url("postgres://fodi:s3cr%40t@db.internal:5432/fodi?sslmode=require"),
            "postgres://fodi:***@db.internal:5432/fodi?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://fodi@db/fodi"),
            "postgres://fodi@db/fodi"
        );
        assert_eq!(
            redact_url("postgres:///fodi?host=/tmp"),
            "postgres:///fodi?host=/tmp"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("postgres://fodi@db/fodi?sslmode=require&password=hunter2&sslpassword=x"),
            "postgres://fodi@db/fodi?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://fodi:a@db?password=b"),
            "postgres://fodi:***@db?password=***"
        );
        assert_eq!(
            redact_url("postgres://fodi@db?pass%77ord=hunter2&x=%zz"),
            "postgres://fodi@db?pass%77ord=***&x=%zz"
        );
    }

    #[test]
    fn debug_never_prints_the_password() {
        let config = DbConfig {
            replica_url: Some("postgres://r:hunter2@replica/fodi".into()),
            ..DbConfig::with_url("postgres://u:hunter2@primary/fodi")
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("primary"), "{printed}");
    }

    #[test]
    fn durations_are_human_readable_in_config_files() {
        let config: DbConfig = serde_json::from_str(
            r#"{"url": "postgres://localhost/fodi", "acquire_timeout": "250ms", "statement_timeout": "2m"}"#,
        )
        .unwrap();
        assert_eq!(config.acquire_timeout, Duration::from_millis(250));
        assert_eq!(config.statement_timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.max_connections, DbConfig::default().max_connections);
    }

    #[test]
    fn a_url_that_cannot_be_read_keeps_only_its_scheme() {
        // The unescaped `/` ends the authority early: no way to tell where the password ends.
        assert_eq!(
            redact_url("postgres://fodi:pa/ss@db/fodi"),
            "postgres://***"
        );
        assert_eq!(
            redact_url("postgres://u:pw@host:notaport/db"),
            "postgres://***"
        );
    }

    #[test]
    fn parameters_are_redacted_by_their_decoded_name() {
        assert_eq!(
            redact_url("postgres://db/fodi?ssl%70assword=x&passwords=kept&%70assword=y"),
            "postgres://db/fodi?ssl%70assword=***&passwords=kept&%70assword=***"
        );
    }

    #[test]
    fn an_invalid_url_is_a_typed_error_without_the_password() {
        let config = DbConfig::with_url("postgres://u:hunter2@host:notaport/db");
        let error = config.primary_options().unwrap_err();
        assert!(matches!(error, DbError::InvalidConfig { .. }), "{error:?}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
