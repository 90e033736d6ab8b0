//! The HTTP health probe against real servers: what it sends, not only what it reads back.

use std::time::Duration;

use orchestrator::HealthProbe;
use orchestrator::health::{self, ProbeResult};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Answers one request with 200 and returns the value of the `Host` header it carried.
async fn record_host_header(listener: TcpListener) -> Option<String> {
    let (stream, _) = listener.accept().await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut host = None;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("host")
        {
            host = Some(value.trim().to_owned());
        }
    }
    stream
        .get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    host
}

/// Probes `http://{host}:{port}/health` served by `listener`: the Host header the server saw
/// and what the probe concluded.
async fn probe_recording_host(listener: TcpListener, host: &str) -> (Option<String>, ProbeResult) {
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(record_host_header(listener));
    let probe = HealthProbe::Http {
        url: format!("http://{host}:{port}/health"),
        expected_status: 200,
    };
    let (result, _) = health::check(&probe, Duration::from_secs(5)).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the probe reached the server")
        .unwrap();
    (seen, result)
}

/// An IPv6 host goes into the Host header in brackets (RFC 9110 section 7.2, RFC 3986
/// section 3.2.2): `::1:8080` would read as a host with no port, or as a different address.
#[tokio::test]
async fn an_ipv6_target_gets_a_bracketed_host_header() {
    let listener = match TcpListener::bind("[::1]:0").await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("skipped: this machine has no IPv6 loopback ([::1]): {error}");
            return;
        }
    };
    let port = listener.local_addr().unwrap().port();
    let (host, result) = probe_recording_host(listener, "[::1]").await;
    assert_eq!(host.as_deref(), Some(format!("[::1]:{port}").as_str()));
    assert_eq!(result, ProbeResult::Healthy);
}

/// The same probe against IPv4 keeps the plain `host:port`.
#[tokio::test]
async fn an_ipv4_target_gets_a_plain_host_header() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (host, result) = probe_recording_host(listener, "127.0.0.1").await;
    assert_eq!(host.as_deref(), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(result, ProbeResult::Healthy);
}
