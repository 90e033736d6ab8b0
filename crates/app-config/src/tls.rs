//! `[server.tls]` and `[control.tls]`: HTTPS served by a binary itself, from PEM files.
//!
//! rustls (with ring) offers TLS 1.2 and 1.3 only; nothing older can be negotiated. No client
//! certificates are asked for: callers prove who they are with bearer tokens.

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why the files do not make a server configuration; each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path} holds no certificate (PEM \"BEGIN CERTIFICATE\" blocks)")]
    NoCertificate { path: PathBuf },
    #[error("cannot read a private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key in {key} does not serve the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsFiles {
    /// Reads both files into a server configuration.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certificates = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|blocks| blocks.collect::<Result<Vec<_>, _>>())
            .map_err(|error| TlsError::Certificates {
                path: self.cert_file.clone(),
                reason: error.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert_file.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|error| TlsError::Key {
            path: self.key_file.clone(),
            reason: error.to_string(),
        })?;
        // The process's crypto provider: ring, the only one built in.
        rustls::ServerConfig::builder_with_protocol_versions(&[
            &rustls::version::TLS13,
            &rustls::version::TLS12,
        ])
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| TlsError::Mismatch {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            reason: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_certificate_and_its_key_serve_and_every_mistake_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let issued = test_support::Certificates::issue(&["localhost"]);
        let other = test_support::Certificates::issue(&["localhost"]);
        let cert_file = write(dir.path(), "server.crt", &issued.certificate);
        let key_file = write(dir.path(), "server.key", &issued.key);
        let files = TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        };
        files.server_config().unwrap();

        let other_key = write(dir.path(), "other.key", &other.key);
        let mismatch = TlsFiles {
            key_file: other_key,
            ..files.clone()
        };
        assert!(matches!(
            mismatch.server_config(),
            Err(TlsError::Mismatch { .. })
        ));

        let missing = TlsFiles {
            cert_file: dir.path().join("nowhere.crt"),
            ..files.clone()
        };
        let error = missing.server_config().unwrap_err();
        assert!(error.to_string().contains("nowhere.crt"), "{error}");

        let no_certificate = TlsFiles {
            cert_file: key_file,
            ..files.clone()
        };
        assert!(matches!(
            no_certificate.server_config(),
            Err(TlsError::NoCertificate { .. })
        ));
        let no_key = TlsFiles {
            key_file: cert_file,
            ..files
        };
        assert!(matches!(no_key.server_config(), Err(TlsError::Key { .. })));
    }
}
