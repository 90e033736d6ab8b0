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
    /// Which database role each part of the server acts as.
    pub roles: RoleSettings,
    /// The size of each part's pool, where it differs from `database.max_connections`.
    pub pools: PoolSizes,
    pub migrations: MigrationSettings,
    pub log: LogSettings,
    /// Who may call (the `access` crate's configuration).
    pub auth: access::AuthConfig,
    /// Per-caller rate limits on writes and costly reads.
    pub limits: access::LimitConfig,
    pub orchestrator: OrchestratorSettings,
    pub jobs: JobSettings,
    /// The AI store's own configuration (`[ai.cache]`, `[ai.retention]`, `[ai.retry]`).
    pub ai: AiConfig,
    /// The ledger's own configuration (`[ledger]`, `[ledger.retry]`).
    pub ledger: LedgerConfig,
    pub analytics: AnalyticsSettings,
}

/// `[roles]`: least privilege at run time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleSettings {
    /// Each crate's connections act as its schema's group role (`fodi_core`,
    /// `fodi_ai`, `fodi_ledger`, `fodi_analytics`; readiness and the supervision lock as
    /// `fodi_readonly`), so that none can write another's tables and the ledger moves money
    /// only through its engine's functions. The login of `database.url` must be a member of
    /// each (deploy/roles.sql); the embedded cluster creates that login itself (`fodi_app`).
    /// Off: every connection acts as the login itself.
    pub per_crate: bool,
}

impl Default for RoleSettings {
    fn default() -> Self {
        Self { per_crate: true }
    }
}

/// `[pools]`: the most connections each part's pool opens (with `[roles] per_crate`, where
/// each part has a pool of its own); unset, `database.max_connections`. A part with little
/// traffic (the core set's users, analytics queries) needs few: see `--print-config` for
/// what one instance may open in total, and docs/operations.md for the budget.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSizes {
    pub core: Option<u32>,
    pub ai: Option<u32>,
    pub ledger: Option<u32>,
    pub analytics: Option<u32>,
}

impl PoolSizes {
    /// The size of `part`'s pool (`core`, `ai`, `ledger`, `analytics`).
    pub fn of(&self, part: &str, database: &DbConfig) -> u32 {
        let configured = match part {
            "core" => self.core,
            "ai" => self.ai,
            "ledger" => self.ledger,
            "analytics" => self.analytics,
            _ => None,
        };
        configured.unwrap_or(database.max_connections)
    }
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

/// The backend process the api-server supervises (the seed system's Go backend). The seed's
/// variables `ORCHESTRATOR_ENABLED`, `GO_BACKEND_BINARY` and `GO_BACKEND_URL` override these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorSettings {
    pub enabled: bool,
    /// The backend's program.
    pub binary: Option<PathBuf>,
    pub args: Vec<String>,
    /// The backend's environment. Of this server's it inherits only `orchestrator::BASE_ENV`
    /// (PATH, HOME, the locale, ...) and the variables `inherit_env` names: never this
    /// server's tokens or database URLs.
    pub env: std::collections::BTreeMap<String, String>,
    pub inherit_env: Vec<String>,
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
            env: std::collections::BTreeMap::new(),
            inherit_env: Vec::new(),
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
    /// Expiring lapsed holds, releasing what they reserved (`hold_expiry`).
    #[serde(with = "humantime_serde")]
    pub hold_expiry: Duration,
    /// Settling the ledger's history into the wallets' checkpoints (`history_settler`).
    #[serde(with = "humantime_serde")]
    pub history_settler: Duration,
    /// Recomputing the ledger's invariants and verifying its sealed chain (`ledger_audit`):
    /// reads the whole history, so not often.
    #[serde(with = "humantime_serde")]
    pub ledger_audit: Duration,
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
            hold_expiry: Duration::from_secs(1),
            history_settler: Duration::from_secs(1),
            ledger_audit: Duration::from_secs(3600),
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
        self.auth.validate()?;
        let loopback = matches!(self.server.host.as_str(), "127.0.0.1" | "::1" | "localhost");
        if !loopback && self.auth.is_open() {
            anyhow::bail!(
                "refusing to serve {} without credentials: add [[auth.tokens]] (and [auth.jwt] for \
                 end users), or bind 127.0.0.1",
                self.server.host
            );
        }
        let intervals = [
            ("server.request_timeout", self.server.request_timeout),
            ("jobs.ai_maintenance", self.jobs.ai_maintenance),
            ("jobs.ledger_sealer", self.jobs.ledger_sealer),
            ("jobs.hold_expiry", self.jobs.hold_expiry),
            ("jobs.history_settler", self.jobs.history_settler),
            ("jobs.ledger_audit", self.jobs.ledger_audit),
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
        if let Some(workers) = self.server.workers {
            at_least_one("server.workers", workers as u64)?;
        }
        access::TrustedProxies::parse(&self.server.trusted_proxies)?;
        for (_, _, part) in crate::pools::PARTS {
            at_least_one(
                &format!("pools.{part}"),
                u64::from(self.pools.of(part, &self.database)),
            )?;
        }
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
        // A row for a day without its partition lands in the default partition, where it
        // outlives the retention and stops that day's partition from being created later:
        // the recorder's window stays within the partitions' days.
        let recorder = &self.analytics.recorder;
        let partitions = &self.analytics.partitions;
        let day = 24 * 3600;
        if recorder.accept_past.as_secs() > u64::from(partitions.retention_days) * day {
            anyhow::bail!(
                "analytics.recorder.accept_past must not exceed analytics.partitions.retention_days"
            );
        }
        if recorder.accept_future.as_secs() > u64::from(partitions.days_ahead) * day {
            anyhow::bail!(
                "analytics.recorder.accept_future must not exceed analytics.partitions.days_ahead"
            );
        }
        if self.orchestrator.enabled && self.orchestrator.binary.is_none() {
            anyhow::bail!("orchestrator.enabled needs orchestrator.binary (or GO_BACKEND_BINARY)");
        }
        Ok(())
    }

    /// Whether the deployment manages migration set `set` (an empty list means all).
    pub fn manages(&self, set: &str) -> bool {
        self.migrations.sets.is_empty() || self.migrations.sets.iter().any(|s| s == set)
    }

    /// The settings as `--print-config` shows them: tokens, passwords and the backend's
    /// environment values replaced.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        shown.auth = shown.auth.redacted();
        shown.database = shown.database.redacted();
        // The backend's environment is where its own secrets are handed over.
        for value in shown.orchestrator.env.values_mut() {
            *value = "***".into();
        }
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
    /// On SIGTERM, how long in-flight requests may take to finish before their connections
    /// are closed (whole seconds; a termination grace period must be longer, see
    /// docs/operations.md).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Origins browsers may call from (`["https://app.example.com"]`, or `["*"]`); empty: no
    /// cross-origin calls.
    #[serde(deserialize_with = "app_config::list")]
    pub cors_origins: Vec<String>,
    /// The largest request body accepted, in bytes; a larger one is answered 413
    /// (`body-too-large`). The default holds the largest batches (10,000 items).
    pub max_body_bytes: usize,
    /// Serve HTTPS with these PEM files (`cert_file`, `key_file`); none: plain HTTP, for a
    /// server behind a proxy that terminates TLS.
    pub tls: Option<app_config::TlsFiles>,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or CIDR blocks, e.g.
    /// `["127.0.0.1", "10.0.0.0/8"]`): for rate limits and `/metrics` on loopback. No other
    /// forwarded header is read, and from nobody else.
    #[serde(deserialize_with = "app_config::list")]
    pub trusted_proxies: Vec<String>,
    /// Threads serving HTTP, each with its own connections and queue of gathered cache reads.
    /// Unset: one per CPU core, or half the cores (at least one) when the database runs on
    /// this machine (the embedded cluster, a Unix socket, a loopback address), which needs
    /// the rest; see docs/benchmarks.md.
    pub workers: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            max_body_bytes: crate::api::body::MAX_BODY_BYTES,
            tls: None,
            trusted_proxies: Vec::new(),
            workers: None,
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
