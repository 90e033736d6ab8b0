//! What the workspace's tests share and need no database for, written once: a free loopback
//! port, waiting until a condition holds, the small HTTP server the supervision tests run as
//! their child process (`child.py`, Python's standard library only), and TLS certificates
//! made at test time.
//!
//! A dev-dependency of the crates' and binaries' tests, never a normal dependency. Fixtures
//! that need PostgreSQL (a test database, a user of `public.users`) are
//! `db_core::testing`'s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free loopback port: free when asked, so a child told to bind it a moment later usually
/// gets it. Prefer binding port 0 and reading the port back where the program allows it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("no free loopback port: {error}"))
}

/// Polls `condition` every 20 ms until it holds or `within` has passed; tells which. A
/// synchronous condition is `|| std::future::ready(check())`.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test child: `python3 child.py --port N [--exit-after S] [--lines N] ...`, an HTTP
/// server answering `/health` (see the script for its options).
pub fn child_script() -> String {
    // Found from the running test's package (cargo runs a test in its package's directory)
    // before the path compiled in: a build cache shared between checkouts can hand this
    // crate, compiled in another checkout since removed, to this one unchanged.
    let here = std::env::current_dir()
        .ok()
        .map(|package| package.join("../../crates/test-support/child.py"))
        .filter(|script| script.exists());
    here.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("child.py"))
        .display()
        .to_string()
}

/// A test CA and a server certificate it issued, as PEM text, made fresh for each call.
pub struct Certificates {
    /// The CA's certificate: what a client must trust.
    pub ca: String,
    /// The server's certificate, for `names` (host names or IP addresses).
    pub certificate: String,
    /// The server certificate's private key.
    pub key: String,
}

impl Certificates {
    /// A CA and a certificate it issued for `names`.
    pub fn issue(names: &[&str]) -> Self {
        fn made<T>(step: &str, result: Result<T, rcgen::Error>) -> T {
            result.unwrap_or_else(|error| panic!("cannot make the test {step}: {error}"))
        }
        let ca_key = made("CA key", rcgen::KeyPair::generate());
        let mut ca = made(
            "CA parameters",
            rcgen::CertificateParams::new(Vec::<String>::new()),
        );
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "FODI test CA");
        let ca_certificate = made("CA certificate", ca.self_signed(&ca_key));
        let key = made("key", rcgen::KeyPair::generate());
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = made(
            "certificate parameters",
            rcgen::CertificateParams::new(names),
        );
        let certificate = made(
            "certificate",
            params.signed_by(&key, &ca_certificate, &ca_key),
        );
        Self {
            ca: ca_certificate.pem(),
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }
}
