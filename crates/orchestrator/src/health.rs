//! Health probes: an HTTP GET (a minimal HTTP/1.1 client: this crate stays free of HTTP
//! frameworks) or a TCP connect, each bounded by the check's timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::HealthProbe;

/// `http://host:port/path`, parsed once. An IPv6 host is written in brackets
/// (`http://[::1]:8080/`), as RFC 3986 wants; `host` holds it without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// What to connect to: a name, an IPv4 address, or an IPv6 address without brackets.
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
        let bad_port = || format!("health url {url:?} has a bad port");
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("health url {url:?} has an unclosed ["))?;
            let port = match after {
                "" => 80,
                _ => after
                    .strip_prefix(':')
                    .and_then(|port| port.parse::<u16>().ok())
                    .ok_or_else(bad_port)?,
            };
            (host, port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad_port())?),
                None => (authority, 80),
            };
            if host.contains(':') {
                return Err(format!(
                    "health url {url:?}: an IPv6 address is written in brackets, as in http://[::1]:8080/"
                ));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(format!("health url {url:?} has no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The value of the request's `Host` header: `host:port`, an IPv6 address in brackets
    /// (`[::1]:8080`), since without them its colons could not be told from the port's.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
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
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: fodi-orchestrator\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header()
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

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls_and_in_the_host_header() {
        let target = HttpTarget::parse("http://[::1]:8080/health").unwrap();
        assert_eq!(
            target,
            HttpTarget {
                host: "::1".into(),
                port: 8080,
                path: "/health".into()
            }
        );
        assert_eq!(target.host_header(), "[::1]:8080");
        assert_eq!(HttpTarget::parse("http://[::1]").unwrap().port, 80);
        assert_eq!(
            HttpTarget::parse("http://[fe80::1]/").unwrap().host,
            "fe80::1"
        );
        assert_eq!(
            HttpTarget::parse("http://127.0.0.1:8081/")
                .unwrap()
                .host_header(),
            "127.0.0.1:8081"
        );
        assert!(HttpTarget::parse("http://::1:8080/").is_err());
        assert!(HttpTarget::parse("http://[::1/").is_err());
        assert!(HttpTarget::parse("http://[::1]8080/").is_err());
        assert!(HttpTarget::parse("http://[]:8080/").is_err());
    }
}
