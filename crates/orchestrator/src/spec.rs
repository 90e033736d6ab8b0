//! [`ProcessSpec`]: everything the supervisor needs to know to run one process. Deserialises
//! from the supervisor's TOML (durations as `"500ms"`, `"2s"`, `"1m"`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::OrchestratorError;

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Unique among the supervisor's processes: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The program (a path, or a name looked up on PATH).
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The process's environment, with `env_file` (these win over it). Nothing else of the
    /// supervisor's environment is passed on but [`crate::BASE_ENV`] and the variables
    /// `inherit_env` names: the supervisor's own secrets (tokens, database URLs) stay its own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the supervisor's environment passed on by name, besides `BASE_ENV`.
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// A dotenv file (`KEY=value` lines, `#` comments, quotes, `${VAR}` outside single
    /// quotes), read at each start.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Run the process as this user (a name, or a numeric uid), with its primary group and
    /// `HOME`, `USER` and `LOGNAME` set to the user's; the supervisor must run as root (or
    /// hold `CAP_SETUID` and `CAP_SETGID`). None: the supervisor's own user.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub health: HealthCheck,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub backoff: Backoff,
    /// Restarts allowed within a window; past them the process is `Fatal` until started by
    /// hand.
    #[serde(default)]
    pub budget: RestartBudget,
    #[serde(default)]
    pub stop: StopSpec,
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub logs: LogSpec,
    /// Started by `start_all` (and by the supervisor binary at start-up).
    #[serde(default = "yes")]
    pub autostart: bool,
}

fn yes() -> bool {
    true
}

impl ProcessSpec {
    /// A spec running `command` with the defaults: no health check, restart always.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            inherit_env: Vec::new(),
            env_file: None,
            working_dir: None,
            user: None,
            health: HealthCheck::default(),
            restart: RestartPolicy::default(),
            backoff: Backoff::default(),
            budget: RestartBudget::default(),
            stop: StopSpec::default(),
            depends_on: Vec::new(),
            logs: LogSpec::default(),
            autostart: true,
        }
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Refuses a spec that cannot run as written.
    pub fn validate(&self) -> Result<(), OrchestratorError> {
        let invalid = |reason: String| OrchestratorError::InvalidSpec {
            process: self.name.clone(),
            reason,
        };
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(invalid(
                "name must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if self.command.trim().is_empty() {
            return Err(invalid("command is empty".into()));
        }
        if let Some(bad) = self
            .inherit_env
            .iter()
            .find(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(invalid(format!(
                "inherit_env: {bad:?} is not a variable name"
            )));
        }
        if let HealthProbe::Http { url, .. } = &self.health.probe {
            crate::health::HttpTarget::parse(url).map_err(invalid)?;
        }
        if let Some(user) = &self.user {
            crate::child::RunAs::resolve(user).map_err(invalid)?;
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return Err(invalid(
                "health interval and timeout must be positive".into(),
            ));
        }
        if self.health.failure_threshold == 0 {
            return Err(invalid(
                "health failure_threshold must be at least 1".into(),
            ));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(invalid(
                "backoff initial must be positive and at most max".into(),
            ));
        }
        // Written so that NaN fails too.
        let multiplier_ok = self.backoff.multiplier.is_finite() && self.backoff.multiplier >= 1.0;
        if !multiplier_ok || !(0.0..=1.0).contains(&self.backoff.jitter) {
            return Err(invalid(
                "backoff multiplier must be at least 1 and jitter between 0 and 1".into(),
            ));
        }
        if self.budget.max_restarts == 0 || self.budget.window.is_zero() {
            return Err(invalid(
                "budget max_restarts and window must be positive".into(),
            ));
        }
        if self
            .depends_on
            .iter()
            .any(|dependency| dependency.name == self.name)
        {
            return Err(invalid("a process cannot depend on itself".into()));
        }
        Ok(())
    }
}

/// How health is checked. A process counts as running only once its check passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(flatten)]
    pub probe: HealthProbe,
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures after which a running process is restarted (it is hung).
    #[serde(default = "defaults::failure_threshold")]
    pub failure_threshold: u32,
    /// After a start, failures do not count for this long (the process is starting up).
    #[serde(default = "defaults::start_grace", with = "humantime_serde")]
    pub start_grace: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: HealthProbe::None,
            interval: defaults::interval(),
            timeout: defaults::timeout(),
            failure_threshold: defaults::failure_threshold(),
            start_grace: defaults::start_grace(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HealthProbe {
    /// Running as soon as it is spawned.
    None,
    /// `GET url` answers with `expected_status`.
    Http {
        url: String,
        #[serde(default = "defaults::expected_status")]
        expected_status: u16,
    },
    /// A TCP connection to `address` (`host:port`) succeeds.
    Tcp { address: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whenever it exits or hangs.
    #[default]
    Always,
    /// When it exits with a failure (non-zero status, a signal) or hangs.
    OnFailure,
    Never,
}

/// Delay before the n-th consecutive restart: `initial * multiplier^(n-1)`, at most `max`, each
/// varied by up to `jitter` (a fraction) so that processes failing together do not restart in
/// lockstep. After `reset_after` of healthy running, n starts again at 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "defaults::backoff_initial", with = "humantime_serde")]
    pub initial: Duration,
    #[serde(default = "defaults::backoff_max", with = "humantime_serde")]
    pub max: Duration,
    #[serde(default = "defaults::backoff_multiplier")]
    pub multiplier: f64,
    #[serde(default = "defaults::backoff_jitter")]
    pub jitter: f64,
    #[serde(default = "defaults::reset_after", with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: defaults::backoff_initial(),
            max: defaults::backoff_max(),
            multiplier: defaults::backoff_multiplier(),
            jitter: defaults::backoff_jitter(),
            reset_after: defaults::reset_after(),
        }
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (1-based), jitter applied with `unit` in
    /// [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max.as_secs_f64());
        let varied = capped * (1.0 + self.jitter * (2.0 * unit - 1.0));
        Duration::from_secs_f64(varied.clamp(0.0, self.max.as_secs_f64()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartBudget {
    #[serde(default = "defaults::budget_restarts")]
    pub max_restarts: u32,
    #[serde(default = "defaults::budget_window", with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max_restarts: defaults::budget_restarts(),
            window: defaults::budget_window(),
        }
    }
}

/// How a process is stopped: `signal` to its whole process group, then SIGKILL of the group
/// after `grace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    #[serde(default = "defaults::stop_signal")]
    pub signal: StopSignal,
    #[serde(default = "defaults::stop_grace", with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        Self {
            signal: defaults::stop_signal(),
            grace: defaults::stop_grace(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    #[serde(alias = "SIGTERM")]
    Term,
    #[serde(alias = "SIGINT")]
    Int,
    #[serde(alias = "SIGQUIT")]
    Quit,
    #[serde(alias = "SIGHUP")]
    Hup,
    #[serde(alias = "SIGKILL")]
    Kill,
}

/// Another process this one needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub name: String,
    #[serde(default)]
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// Spawned.
    Started,
    /// Its health check passes.
    #[default]
    Healthy,
}

/// Where a process's output goes besides tracing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Recent lines kept in memory (stdout and stderr together).
    #[serde(default = "defaults::ring_lines")]
    pub ring_lines: usize,
    /// Appends every line to this file, rotated by size.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default = "defaults::max_file_bytes")]
    pub max_file_bytes: u64,
    /// Rotated files kept (`file.1` the most recent).
    #[serde(default = "defaults::keep_files")]
    pub keep_files: u32,
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            ring_lines: defaults::ring_lines(),
            file: None,
            max_file_bytes: defaults::max_file_bytes(),
            keep_files: defaults::keep_files(),
        }
    }
}

mod defaults {
    use std::time::Duration;

    use super::StopSignal;

    pub fn interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn timeout() -> Duration {
        Duration::from_millis(500)
    }
    pub fn failure_threshold() -> u32 {
        3
    }
    pub fn start_grace() -> Duration {
        Duration::from_secs(5)
    }
    pub fn expected_status() -> u16 {
        200
    }
    pub fn backoff_initial() -> Duration {
        Duration::from_millis(100)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(30)
    }
    pub fn backoff_multiplier() -> f64 {
        2.0
    }
    pub fn backoff_jitter() -> f64 {
        0.1
    }
    pub fn reset_after() -> Duration {
        Duration::from_secs(60)
    }
    pub fn budget_restarts() -> u32 {
        10
    }
    pub fn budget_window() -> Duration {
        Duration::from_secs(300)
    }
    pub fn stop_signal() -> StopSignal {
        StopSignal::Term
    }
    pub fn stop_grace() -> Duration {
        Duration::from_secs(10)
    }
    pub fn ring_lines() -> usize {
        1_000
    }
    pub fn max_file_bytes() -> u64 {
        10 * 1024 * 1024
    }
    pub fn keep_files() -> u32 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_within_its_jitter() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(60),
        };
        let delays: Vec<u128> = (1..=6).map(|n| backoff.delay(n, 0.5).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        let jittered = Backoff {
            jitter: 0.2,
            ..backoff
        };
        assert_eq!(jittered.delay(1, 0.0).as_millis(), 80);
        assert_eq!(jittered.delay(1, 1.0).as_millis(), 120);
        assert_eq!(jittered.delay(9, 1.0).as_millis(), 1_000, "never past max");
    }

    #[test]
    fn a_spec_deserialises_from_toml_with_defaults() {
        let spec: ProcessSpec = toml::from_str(
            r#"
            name = "backend"
            command = "/usr/local/bin/backend"
            args = ["--port", "8081"]
            depends_on = [{ name = "db", condition = "started" }]
            [health]
            kind = "http"
            url = "http://127.0.0.1:8081/health"
            interval = "500ms"
            [backoff]
            max = "10s"
            "#,
        )
        .unwrap();
        assert_eq!(spec.health.interval, Duration::from_millis(500));
        assert_eq!(spec.health.failure_threshold, 3);
        assert_eq!(spec.backoff.max, Duration::from_secs(10));
        assert_eq!(spec.restart, RestartPolicy::Always);
        assert_eq!(spec.depends_on[0].condition, DependencyCondition::Started);
        spec.validate().unwrap();
        let bad = ProcessSpec::new("bad name", "x");
        assert!(bad.validate().is_err());
    }
}
