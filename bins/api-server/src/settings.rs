//! The api-server's configuration, loaded in layers by `app-config`.

use db_core::DbConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DbConfig,
    pub migrations: MigrationSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind; the default serves this machine only.
    pub host: String,
    /// 0 picks a free port (tests); the chosen port is logged and returned by `Application`.
    pub port: u16,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
        }
    }
}

/// The `[migrations]` section, shared with the migrator (so unknown keys are tolerated).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MigrationSettings {
    /// Apply pending migrations at start-up. Unset: only on the embedded cluster, because a
    /// configured server is migrated by `migrator up` in the deployment pipeline.
    pub apply_on_start: Option<bool>,
    /// The sets this deployment manages; empty means all. A deployment whose core backend
    /// owns `public` lists `["ai", "blockchain", "analytics"]`.
    pub sets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directives, e.g. `info,sqlx=warn`; FODI_LOG overrides them.
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info,sqlx=warn".into(),
            json: false,
        }
    }
}
