//! A PostgreSQL server of its own on `127.0.0.1`, speaking TLS with a certificate made for the
//! test (or refusing TLS, to test what clients do then): what a managed PostgreSQL looks like
//! to a client, on this machine.
//!
//! The server's certificate is issued by a test CA for the name `localhost` only, so that a
//! test can reach the same server by a name the certificate covers (`localhost`) and by one
//! it does not (`127.0.0.1`). A second CA, which signed nothing, stands for the wrong CA.

// A fixture that cannot be set up fails its test, with the step that failed.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::cluster::server_user::ServerUser;
use crate::cluster::{Durability, LocalCluster, LocalClusterConfig};

/// A running server with TLS on or off; stopped and removed when dropped.
pub struct TlsCluster {
    cluster: LocalCluster,
    dir: PathBuf,
    port: u16,
}

impl TlsCluster {
    /// Starts a fresh cluster listening on `127.0.0.1`, with `ssl = on` when `tls`.
    ///
    /// # Panics
    /// When the certificates cannot be made or the server does not start: a test cannot go on.
    pub async fn start(tls: bool) -> Self {
        let (dir, server_user) = super::cluster_dir("fodi-tls-pg");
        write_certificates(&dir, &server_user);

        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let mut config = LocalClusterConfig::new(&dir);
        config.port = port;
        config.durability = Durability::Ephemeral;
        config.settings = vec![
            ("listen_addresses".into(), "'127.0.0.1'".into()),
            ("ssl".into(), if tls { "on" } else { "off" }.into()),
            ("ssl_cert_file".into(), quoted(&dir.join("server.crt"))),
            ("ssl_key_file".into(), quoted(&dir.join("server.key"))),
            ("autovacuum".into(), "off".into()),
        ];
        config.stop_on_drop = true;
        let cluster = LocalCluster::start(config)
            .await
            .expect("the TLS test cluster starts");
        Self { cluster, dir, port }
    }

    /// A URL to database `postgres` as the superuser over TCP to `host` (`localhost` or
    /// `127.0.0.1`), with `parameters` appended (`sslmode=verify-full&sslrootcert=...`).
    pub fn url(&self, host: &str, parameters: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?{parameters}",
            self.port
        )
    }

    /// The CA that issued the server's certificate, as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that issued nothing this server presents.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The CAs and the server's certificate and key, the key readable by the server alone (the
/// server refuses a key others can read).
fn write_certificates(dir: &Path, server_user: &ServerUser) {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "FODI test CA");
    let ca_certificate = ca.self_signed(&ca_key).expect("the CA certificate");

    let other_key = KeyPair::generate().expect("another CA key");
    let mut other = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    other
        .distinguished_name
        .push(DnType::CommonName, "Another CA");
    let other_certificate = other
        .self_signed(&other_key)
        .expect("another CA certificate");

    let server_key = KeyPair::generate().expect("the server's key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_certificate = server
        .signed_by(&server_key, &ca_certificate, &ca_key)
        .expect("the server's certificate");

    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("a certificate file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("its permissions");
        server_user
            .hand_over(&path)
            .expect("handed to the server's user");
    };
    write("ca.crt", &ca_certificate.pem(), 0o644);
    write("other-ca.crt", &other_certificate.pem(), 0o644);
    write("server.crt", &server_certificate.pem(), 0o644);
    write("server.key", &server_key.serialize_pem(), 0o600);
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}
