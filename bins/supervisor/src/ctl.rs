//! `supervisor ctl`: a client of a running supervisor's control API.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the supervisor is and how to authenticate.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the control API at `base`; over HTTPS it trusts `ca_file` (PEM) when
    /// given, else the Mozilla roots.
    pub fn new(base: &str, token: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certificates = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(Ok(certificate)),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                })
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("cannot read certificates from {}", path.display()))?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "{} holds no certificate",
                path.display()
            );
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certificates)));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            // Problem documents are answers too: read them instead of failing on the status.
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent,
        })
    }

    fn call(&self, method: &str, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/admin/processes{path}", self.base);
        let authorization = format!("Bearer {}", self.token);
        let response = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Authorization", &authorization)
                .send_empty(),
            _ => self
                .agent
                .get(&url)
                .header("Authorization", &authorization)
                .call(),
        }
        .with_context(|| format!("cannot reach the supervisor at {}", self.base))?;
        let status = response.status();
        let body: Value = response
            .into_body()
            .read_json()
            .context("the supervisor answered something that is not JSON")?;
        if !status.is_success() {
            let detail = body["detail"]
                .as_str()
                .or(body["title"].as_str())
                .unwrap_or("");
            bail!(
                "{} ({}): {detail}",
                body["title"].as_str().unwrap_or("refused"),
                status.as_u16()
            );
        }
        Ok(body)
    }

    pub fn status(&self, name: Option<&str>) -> anyhow::Result<Value> {
        match name {
            Some(name) => self.call("GET", &format!("/{name}")),
            None => self.call("GET", ""),
        }
    }

    pub fn act(&self, action: &str, name: &str) -> anyhow::Result<Value> {
        self.call("POST", &format!("/{name}/{action}"))
    }

    pub fn logs(&self, name: &str, lines: usize) -> anyhow::Result<Value> {
        self.call("GET", &format!("/{name}/logs?lines={lines}"))
    }
}

/// One line per process: name, state, pid, restarts, uptime.
pub fn print_statuses(statuses: &Value) {
    let list = match statuses {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    };
    println!(
        "{:<20} {:<10} {:>8} {:>8} {:>10}",
        "NAME", "STATE", "PID", "RESTARTS", "UPTIME"
    );
    for status in list {
        let text = |key: &str| match &status[key] {
            Value::Null => "-".to_owned(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let uptime = status["uptime_seconds"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds:.0}s"));
        println!(
            "{:<20} {:<10} {:>8} {:>8} {:>10}",
            text("name"),
            text("state"),
            text("pid"),
            text("restarts"),
            uptime
        );
    }
}

pub fn print_logs(lines: &Value) {
    for line in lines.as_array().into_iter().flatten() {
        println!("{}", line["line"].as_str().unwrap_or_default());
    }
}
