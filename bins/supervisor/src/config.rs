//! `supervisor.toml`: the control API's address and token, and the processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use orchestrator::ProcessSpec;
use serde::Deserialize;

/// Environment variable holding the control API's bearer token (instead of the file).
pub const TOKEN_ENV: &str = "SUPERVISOR_TOKEN";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub control: ControlConfig,
    /// `[[process]]` tables.
    #[serde(default, rename = "process")]
    pub processes: Vec<ProcessSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Where the control API and `/metrics` listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token every control request must carry; `SUPERVISOR_TOKEN` overrides it.
    #[serde(default)]
    pub token: Option<String>,
    /// Serve the control API over HTTPS with these PEM files (`cert_file`, `key_file`).
    #[serde(default)]
    pub tls: Option<app_config::TlsFiles>,
    /// The CA `supervisor ctl` trusts for the control API's certificate (PEM); without it, the
    /// Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token: None,
            tls: None,
            ca_file: None,
        }
    }
}

/// Port 9190: clear of node_exporter's 9100, which often runs on the same hosts.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9190))
}

impl Config {
    /// Reads and checks `path`; the token comes from `SUPERVISOR_TOKEN` when set.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        if let Ok(token) = std::env::var(TOKEN_ENV) {
            config.control.token = Some(token);
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        match &self.control.token {
            None => bail!(
                "no control token: set control.token in the configuration or {TOKEN_ENV} \
                 (every control request must carry it as a bearer token)"
            ),
            Some(token) if token.len() < 16 => {
                bail!("the control token is too short: use at least 16 characters")
            }
            Some(_) => Ok(()),
        }
    }

    pub fn token(&self) -> &str {
        self.control.token.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_example_is_a_valid_configuration() {
        let mut config: Config =
            toml::from_str(include_str!("../../../deploy/supervisor.toml")).unwrap();
        assert!(config.check().is_err(), "no token in the example");
        config.control.token = Some("a-token-long-enough".into());
        config.check().unwrap();
        let names: Vec<&str> = config.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["backend", "cache"]);
        for process in &config.processes {
            process.validate().unwrap();
        }
    }
}
