//! The api-server's configuration, loaded in layers by `app-config`.

use std::path::PathBuf;
use std::time::Duration;

use ai_store::AiConfig;
use analytics::{PartitionConfig, RecorderConfig};
use db_core::DbConfig;
use db_core::settings::{at_least_one, positive_duration};
use ledger::LedgerConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DbConfig,
    pub migrations: MigrationSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub orchestrator: OrchestratorSettings,
    pub jobs: JobSettings,
    /// The AI store's own configuration (`[ai.cache]`, `[ai.retention]`, `[ai.retry]`).
    pub ai: AiConfig,
    /// The ledger's own configuration (`[ledger]`, `[ledger.retry]`).
    pub ledger: LedgerConfig,
    pub analytics: AnalyticsSettings,
}

/// Analytics: the crate's recorder and partitions as it configures them, and the bridge from
/// this server's own metrics into `analytics.metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// Metric names to copy (`"fodi_http_request_duration_seconds"`, or a prefix such as
    /// `"fodi_http_*"`); empty: no bridge.
    #[serde(deserialize_with = "app_config::list")]
    pub bridge_metrics: Vec<String>,
    /// How often the selected metrics are copied.
    #[serde(with = "humantime_serde")]
    pub bridge_interval: Duration,
    pub recorder: RecorderConfig,
    pub partitions: PartitionConfig,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            bridge_metrics: Vec::new(),
            bridge_interval: Duration::from_secs(60),
            recorder: RecorderConfig::default(),
            partitions: PartitionConfig::default(),
        }
    }
}

/// Bearer tokens. Admin tokens may do everything; API tokens may write (and read); reads need
/// a token only when `read_requires_token`. Without any token the server serves loopback only.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(deserialize_with = "app_config::list")]
    pub admin_tokens: Vec<String>,
    #[serde(deserialize_with = "app_config::list")]
    pub api_tokens: Vec<String>,
    pub read_requires_token: bool,
}

/// Counts the tokens instead of printing them, so that no log line can carry one.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthSettings")
            .field("admin_tokens", &self.admin_tokens.len())
            .field("api_tokens", &self.api_tokens.len())
            .field("read_requires_token", &self.read_requires_token)
            .finish()
    }
}

/// The backend process the api-server supervises (the seed system's Go backend). The seed's
/// variables `ORCHESTRATOR_ENABLED`, `GO_BACKEND_BINARY` and `GO_BACKEND_URL` override these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorSettings {
    pub enabled: bool,
    /// The backend's program.
    pub binary: Option<PathBuf>,
    pub args: Vec<String>,
    /// Where the backend serves; its health check is `url` + `health_path`.
    pub url: String,
    pub health_path: String,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            binary: None,
            args: Vec::new(),
            url: "http://127.0.0.1:8081".into(),
            health_path: "/health".into(),
        }
    }
}

/// How often the background jobs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Expired cache entries, old messages and examples (`ai`).
    #[serde(with = "humantime_serde")]
    pub ai_maintenance: Duration,
    /// Sealing final transfers into blocks (`blockchain`).
    #[serde(with = "humantime_serde")]
    pub ledger_sealer: Duration,
    /// Recomputing `analytics.daily_stats`.
    #[serde(with = "humantime_serde")]
    pub daily_stats_refresh: Duration,
    /// Creating the coming days' analytics partitions, dropping expired ones.
    #[serde(with = "humantime_serde")]
    pub partition_maintenance: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            ai_maintenance: Duration::from_secs(60),
            ledger_sealer: Duration::from_secs(1),
            daily_stats_refresh: Duration::from_secs(300),
            partition_maintenance: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    /// Applies the seed system's environment variables, which predate this configuration:
    /// `ORCHESTRATOR_ENABLED` (`true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, in any case),
    /// `GO_BACKEND_BINARY`, `GO_BACKEND_URL`. Any other `ORCHESTRATOR_ENABLED` is refused
    /// rather than read as "off".
    pub fn apply_seed_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        if let Some(enabled) = lookup("ORCHESTRATOR_ENABLED") {
            self.orchestrator.enabled = match enabled.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => anyhow::bail!("ORCHESTRATOR_ENABLED={enabled:?}: expected true or false"),
            };
        }
        if let Some(binary) = lookup("GO_BACKEND_BINARY") {
            self.orchestrator.binary = Some(binary.into());
        }
        if let Some(url) = lookup("GO_BACKEND_URL") {
            self.orchestrator.url = url;
        }
        Ok(())
    }

    /// Refuses settings the server must not run with.
    pub fn check(&self) -> anyhow::Result<()> {
        let loopback = matches!(self.server.host.as_str(), "127.0.0.1" | "::1" | "localhost");
        let no_tokens = self.auth.admin_tokens.is_empty() && self.auth.api_tokens.is_empty();
        if !loopback && no_tokens {
            anyhow::bail!(
                "refusing to serve {} without tokens: set auth.admin_tokens and auth.api_tokens \
                 (FODI__AUTH__ADMIN_TOKENS), or bind 127.0.0.1",
                self.server.host
            );
        }
        for token in self.auth.admin_tokens.iter().chain(&self.auth.api_tokens) {
            if token.len() < 16 {
                anyhow::bail!("a token is shorter than 16 characters");
            }
        }
        let intervals = [
            ("server.request_timeout", self.server.request_timeout),
            ("jobs.ai_maintenance", self.jobs.ai_maintenance),
            ("jobs.ledger_sealer", self.jobs.ledger_sealer),
            ("jobs.daily_stats_refresh", self.jobs.daily_stats_refresh),
            (
                "jobs.partition_maintenance",
                self.jobs.partition_maintenance,
            ),
            ("analytics.bridge_interval", self.analytics.bridge_interval),
        ];
        for (key, interval) in intervals {
            positive_duration(key, interval)?;
        }
        at_least_one("server.max_body_bytes", self.server.max_body_bytes as u64)?;
        // Each crate refuses what it cannot work with; the key names the section it sits in.
        let sections = [
            ("database", self.database.validate()),
            ("ai", self.ai.validate()),
            ("ledger", self.ledger.validate()),
            ("analytics.recorder", self.analytics.recorder.validate()),
            ("analytics.partitions", self.analytics.partitions.validate()),
        ];
        for (section, checked) in sections {
            checked.map_err(|error| error.within(section))?;
        }
        if self.orchestrator.enabled && self.orchestrator.binary.is_none() {
            anyhow::bail!("orchestrator.enabled needs orchestrator.binary (or GO_BACKEND_BINARY)");
        }
        Ok(())
    }

    /// The settings as `--print-config` shows them: tokens and passwords replaced.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        let hide = |tokens: &mut Vec<String>| {
            for token in tokens.iter_mut() {
                *token = "***".into();
            }
        };
        hide(&mut shown.auth.admin_tokens);
        hide(&mut shown.auth.api_tokens);
        shown.database.url = shown.database.url.as_deref().map(db_core::redact_url);
        shown.database.replica_url = shown
            .database
            .replica_url
            .as_deref()
            .map(db_core::redact_url);
        shown
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind; the default serves this machine only.
    pub host: String,
    /// 0 picks a free port (tests); the chosen port is logged and returned by `Application`.
    pub port: u16,
    /// A request taking longer is answered 503 (`timeout`); streams and WebSockets only need
    /// to start within it.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Origins browsers may call from (`["https://app.example.com"]`, or `["*"]`); empty: no
    /// cross-origin calls.
    #[serde(deserialize_with = "app_config::list")]
    pub cors_origins: Vec<String>,
    /// The largest request body accepted, in bytes; a larger one is answered 413
    /// (`body-too-large`). The default holds the largest batches (10,000 items).
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            max_body_bytes: crate::api::body::MAX_BODY_BYTES,
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
    #[serde(deserialize_with = "app_config::list")]
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
