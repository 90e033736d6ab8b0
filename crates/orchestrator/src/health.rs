//! Health probes: an HTTP GET (a minimal HTTP/1.1 client: this crate stays free of HTTP
//! frameworks) or a TCP connect, each bounded by the check's timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::HealthProbe;

/// `http://host:port/path`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("health url {url:?} must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("health url {url:?} has a bad port"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("health url {url:?} has no host"));
        }
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Healthy,
    Unhealthy(String),
}

/// Runs `probe` once within `timeout`; returns its result and how long it took.
pub async fn check(probe: &HealthProbe, timeout: Duration) -> (ProbeResult, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, run(probe)).await {
        Ok(result) => result,
        Err(_) => ProbeResult::Unhealthy(format!("no answer within {timeout:?}")),
    };
    (result, started.elapsed())
}

async fn run(probe: &HealthProbe) -> ProbeResult {
    match probe {
        HealthProbe::None => ProbeResult::Healthy,
        HealthProbe::Tcp { address } => match TcpStream::connect(address.as_str()).await {
            Ok(_) => ProbeResult::Healthy,
            Err(error) => ProbeResult::Unhealthy(format!("connect to {address}: {error}")),
        },
        HealthProbe::Http {
            url,
            expected_status,
        } => match HttpTarget::parse(url) {
            Ok(target) => match http_status(&target).await {
                Ok(status) if status == *expected_status => ProbeResult::Healthy,
                Ok(status) => ProbeResult::Unhealthy(format!(
                    "GET {url} answered {status}, expected {expected_status}"
                )),
                Err(error) => ProbeResult::Unhealthy(format!("GET {url}: {error}")),
            },
            Err(reason) => ProbeResult::Unhealthy(reason),
        },
    }
}

/// The status code of `GET target` (the body is not read).
async fn http_status(target: &HttpTarget) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: fodi-orchestrator\r\nConnection: close\r\n\r\n",
        target.path, target.host, target.port
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0_u8; 256];
    while !head.windows(2).any(|pair| pair == b"\r\n") {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
        if head.len() > 8 * 1024 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_path() {
        assert_eq!(
            HttpTarget::parse("http://127.0.0.1:8081/health?deep=1").unwrap(),
            HttpTarget {
                host: "127.0.0.1".into(),
                port: 8081,
                path: "/health?deep=1".into()
            }
        );
        assert_eq!(HttpTarget::parse("http://localhost").unwrap().port, 80);
        assert!(HttpTarget::parse("https://x").is_err());
        assert!(HttpTarget::parse("http://x:port/").is_err());
    }
}
