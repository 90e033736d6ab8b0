//! TLS to PostgreSQL on a real server with `ssl = on` and a certificate made at test time:
//! every `sslmode` a managed PostgreSQL is reached with, and the refusals a client must make.

use std::sync::{Arc, Mutex};

use db_core::sqlx::{self, Connection, PgConnection};
use db_core::testing::tls::TlsCluster;
use db_core::{Db, DbConfig, DbError};

/// Whether the server sees `connection` as encrypted.
async fn encrypted(connection: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(connection)
        .await
        .unwrap()
}

async fn connect(url: &str) -> Result<PgConnection, DbError> {
    db_core::connect(&url.parse().unwrap()).await
}

#[tokio::test]
async fn every_sslmode_connects_or_refuses_as_libpq_does() {
    let server = TlsCluster::start(true).await;
    let ca = server.ca_file().display().to_string();
    let other_ca = server.other_ca_file().display().to_string();

    // require: encrypted, the certificate not checked.
    let mut required = connect(&server.url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    assert!(encrypted(&mut required).await);
    required.close().await.unwrap();

    // verify-full with the CA that issued the certificate, by the name it is for.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    let mut verified = connect(&server.url("localhost", &full)).await.unwrap();
    assert!(encrypted(&mut verified).await);
    verified.close().await.unwrap();

    // verify-ca checks the issuer, not the name.
    let mut by_address =
        connect(&server.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")))
            .await
            .unwrap();
    assert!(encrypted(&mut by_address).await);
    by_address.close().await.unwrap();

    // The wrong CA, and a name the certificate is not for: refused, saying TLS and why.
    let wrong_ca = connect(&server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other_ca}"),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(wrong_ca, DbError::TlsFailed { .. }),
        "{wrong_ca:?}"
    );
    let message = wrong_ca.to_string();
    assert!(
        message.contains("TLS") && message.contains("UnknownIssuer"),
        "{message}"
    );

    let wrong_name = connect(&server.url("127.0.0.1", &full)).await.unwrap_err();
    assert!(
        matches!(wrong_name, DbError::TlsFailed { .. }),
        "{wrong_name:?}"
    );
    let message = wrong_name.to_string();
    assert!(
        message.contains("TLS") && message.contains("not valid for name"),
        "{message}"
    );

    // A pool (what every crate uses) opened from such a URL: each connection encrypted.
    let db = Db::connect(&DbConfig::with_url(server.url("localhost", &full)))
        .await
        .unwrap();
    let all_encrypted: bool = sqlx::query_scalar(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.client_addr IS NOT NULL",
    )
    .fetch_one(db.primary())
    .await
    .unwrap();
    assert!(all_encrypted);
    db.close().await;
}

/// The lines a tracing subscriber wrote, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_server_without_tls_is_refused_by_require_and_noticed_under_prefer() {
    let server = TlsCluster::start(false).await;

    let refused = connect(&server.url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap_err();
    assert!(matches!(refused, DbError::TlsFailed { .. }), "{refused:?}");
    assert!(
        refused.to_string().contains("server does not support TLS"),
        "{refused}"
    );

    // prefer (sqlx's default) falls back to plaintext: said once, however many connections.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    for _ in 0..3 {
        let mut plain = connect(&server.url("127.0.0.1", "sslmode=prefer"))
            .await
            .unwrap();
        assert!(!encrypted(&mut plain).await);
        plain.close().await.unwrap();
    }
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logged.matches("not encrypted").count(),
        1,
        "one warning: {logged}"
    );
    assert!(logged.contains("sslmode=require"), "{logged}");
}
