//! The server's connection pools, one per owner of a schema: each crate's connections act as
//! its schema's group role (`[roles] per_crate`), so that the AI store cannot
//! write the ledger's tables, the ledger moves money only through its engine's functions, and
//! readiness reads as `fodi_readonly`. The login needs membership in those roles only.

use anyhow::Context;
use db_core::sqlx::postgres::PgConnectOptions;
use db_core::{Db, DbConfig};

use crate::settings::Settings;

/// Connections of the read-only pool at most (readiness, the supervision lock).
pub const READONLY_CONNECTIONS: u32 = 2;

/// The login the embedded cluster's pools use (created by deploy/roles.sql).
pub const EMBEDDED_LOGIN: &str = "fodi_app";

/// deploy/roles.sql: the run-time login and its memberships.
pub const ROLES_SQL: &str = include_str!("../../../deploy/roles.sql");

/// The parts of the server with a pool of their own (with `per_crate`): the migration set it
/// works on, the group role it acts as, its name (in `[pools]`, `/metrics` and
/// `pg_stat_activity`).
pub const PARTS: [(&str, &str, &str); 4] = [
    ("core", "fodi_core", "core"),
    ("ai", "fodi_ai", "ai"),
    ("blockchain", "fodi_ledger", "ledger"),
    ("analytics", "fodi_analytics", "analytics"),
];

/// One pool per part of the server. Without `per_crate`, all are the same pool.
#[derive(Clone)]
pub struct Pools {
    pub core: Db,
    pub ai: Db,
    pub ledger: Db,
    pub analytics: Db,
    /// Readiness, the supervision lock: reads only.
    pub readonly: Db,
    /// Each pool opened, once, by the name `/metrics` gives it.
    opened: Vec<(&'static str, Db)>,
}

impl Pools {
    /// Opens the pools on `options` (the login). A pool whose set this deployment does not
    /// manage is the read-only one: it is never used, and its group role may not exist.
    pub async fn open(settings: &Settings, options: &PgConnectOptions) -> anyhow::Result<Self> {
        if !settings.roles.per_crate {
            let db = Db::connect_with(&settings.database, options.clone()).await?;
            return Ok(Self {
                core: db.clone(),
                ai: db.clone(),
                ledger: db.clone(),
                analytics: db.clone(),
                readonly: db.clone(),
                opened: vec![("shared", db)],
            });
        }
        let readonly = open(
            &readonly_config(&settings.database),
            options,
            "fodi_readonly",
            "readonly",
        )
        .await?;
        let mut opened = vec![("readonly", readonly.clone())];
        let mut parts = Vec::with_capacity(PARTS.len());
        for (set, role, name) in PARTS {
            if settings.manages(set) {
                let db = open(&part_config(settings, name), options, role, name).await?;
                opened.push((name, db.clone()));
                parts.push(db);
            } else {
                parts.push(readonly.clone());
            }
        }
        let [core, ai, ledger, analytics] = <[Db; 4]>::try_from(parts)
            .unwrap_or_else(|_| unreachable!("one pool per entry of PARTS"));
        Ok(Self {
            core,
            ai,
            ledger,
            analytics,
            readonly,
            opened,
        })
    }

    /// Each pool opened, by name: `shared`, or `readonly` and the managed parts.
    pub fn opened(&self) -> &[(&'static str, Db)] {
        &self.opened
    }

    /// Closes every pool.
    pub async fn close(&self) {
        for (_, db) in &self.opened {
            db.close().await;
        }
    }
}

/// `database` with the size `[pools]` gives part `name`.
fn part_config(settings: &Settings, name: &str) -> DbConfig {
    let max_connections = settings.pools.of(name, &settings.database);
    DbConfig {
        max_connections,
        min_connections: settings.database.min_connections.min(max_connections),
        ..settings.database.clone()
    }
}

/// Readiness and the supervision lock need a connection or two, not a full pool, and the
/// primary: no replica.
fn readonly_config(database: &DbConfig) -> DbConfig {
    DbConfig {
        min_connections: database.min_connections.min(READONLY_CONNECTIONS),
        max_connections: database.max_connections.min(READONLY_CONNECTIONS),
        replica_url: None,
        ..database.clone()
    }
}

/// The most connections one instance may hold to PostgreSQL, part by part, as [`Pools::open`]
/// and the crates open them: what `max_connections` (and a PgBouncer pool) must leave room
/// for, times the instances.
pub fn connection_budget(settings: &Settings) -> Vec<(String, usize)> {
    // A pool with a replica opens as many there as on the primary.
    let pool = |config: &DbConfig| {
        let servers = if config.replica_url.is_some() { 2 } else { 1 };
        config.max_connections as usize * servers
    };
    let mut parts = Vec::new();
    if settings.roles.per_crate {
        let readonly = pool(&readonly_config(&settings.database));
        parts.push(("pool readonly".to_owned(), readonly));
        for (set, _, part) in PARTS {
            if settings.manages(set) {
                let key = if settings.pools.of(part, &settings.database)
                    == settings.database.max_connections
                {
                    "database.max_connections".to_owned()
                } else {
                    format!("pools.{part}")
                };
                parts.push((
                    format!("pool {part} ({key})"),
                    pool(&part_config(settings, part)),
                ));
            }
        }
    } else {
        parts.push((
            "pool (database.max_connections)".to_owned(),
            pool(&settings.database),
        ));
    }
    if settings.manages("blockchain") {
        let engine = settings.ledger.engine_connections;
        parts.push((
            "ledger engine (ledger.engine_connections)".to_owned(),
            engine,
        ));
    }
    if settings.manages("ai") {
        let cache = settings.ai.cache.connections.max(1);
        parts.push((
            "AI cache statements (ai.cache.connections)".to_owned(),
            cache,
        ));
    }
    // Sessions of their own: behind a pooler in transaction mode they go to session_url.
    let session = match settings.database.pooling {
        db_core::Pooling::Session => "",
        db_core::Pooling::Transaction => ", database.session_url",
    };
    if settings.manages("ai") && settings.ai.cache.local_entries > 0 {
        parts.push((
            format!("AI cache change notifications (ai.cache.local_entries{session})"),
            1,
        ));
    }
    if settings.manages("analytics") {
        parts.push((format!("analytics recorder (COPY{session})"), 1));
    }
    if settings.orchestrator.enabled {
        parts.push((format!("supervision lock (advisory{session})"), 1));
    }
    parts
}

/// A pool acting as `role`, named `<application_name>/<name>` in `pg_stat_activity`.
async fn open(
    config: &DbConfig,
    options: &PgConnectOptions,
    role: &str,
    name: &str,
) -> anyhow::Result<Db> {
    let config = DbConfig {
        application_name: format!("{}/{name}", config.application_name),
        ..config.clone()
    };
    Db::connect_acting_as(&config, options.clone(), Some(role))
        .await
        .with_context(|| {
            format!(
                "cannot act as role {role}: the login of database.url must be a member of it \
                 (run deploy/roles.sql as the schemas' owner), or set roles.per_crate = false"
            )
        })
}
