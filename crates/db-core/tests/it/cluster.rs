//! The embedded cluster: start, attach, reuse, stop; as root it runs as `postgres`.

use std::os::unix::fs::MetadataExt;

use db_core::sqlx::{self, Connection, PgConnection};
use db_core::{ClusterError, Durability, LocalCluster, LocalClusterConfig};

fn config(dir: &std::path::Path) -> LocalClusterConfig {
    LocalClusterConfig {
        durability: Durability::Ephemeral,
        ..LocalClusterConfig::new(dir.join("pg"))
    }
}

async fn query_one(cluster: &LocalCluster, sql: &'static str) -> Result<i64, sqlx::Error> {
    let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres")).await?;
    let value = sqlx::query_scalar(sql).fetch_one(&mut connection).await;
    connection.close().await?;
    value
}

#[tokio::test]
async fn a_local_cluster_initialises_attaches_reuses_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(config(dir.path())).await.unwrap();
    assert!(cluster.started_here());

    if nix::unistd::geteuid().is_root() {
        // PostgreSQL refuses root; the cluster runs as the unprivileged `postgres` account:
        // it owns the data directory, and the server process wrote its pid file as it.
        let postgres = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres account");
        let owner = |path: std::path::PathBuf| path.metadata().unwrap().uid();
        assert_eq!(
            owner(cluster.data_dir().to_path_buf()),
            postgres.uid.as_raw()
        );
        assert_eq!(
            owner(cluster.data_dir().join("postmaster.pid")),
            postgres.uid.as_raw()
        );
    }

    {
        let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres"))
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    }

    // A second start on the same directory attaches instead of starting a second server,
    // and dropping the attached handle leaves the server running.
    let attached = LocalCluster::start(config(dir.path())).await.unwrap();
    assert!(!attached.started_here());
    assert_eq!(attached.port(), cluster.port());
    drop(attached);
    assert_eq!(
        query_one(&cluster, "SELECT sum(id)::bigint FROM kept")
            .await
            .unwrap(),
        7
    );

    cluster.stop().unwrap();
    assert!(
        query_one(&cluster, "SELECT 1::bigint").await.is_err(),
        "the server is stopped"
    );

    // The data directory is reused on the next start.
    let restarted = LocalCluster::start(config(dir.path())).await.unwrap();
    assert!(restarted.started_here());
    assert_eq!(
        query_one(&restarted, "SELECT sum(id)::bigint FROM kept")
            .await
            .unwrap(),
        7
    );
    let data_dir = restarted.data_dir().to_path_buf();
    drop(restarted);
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "dropping the handle that started it stops the server"
    );
}

#[tokio::test]
async fn the_cluster_listens_on_its_private_socket_only() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(config(dir.path())).await.unwrap();
    let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .unwrap();
    let listen: String = sqlx::query_scalar("SELECT current_setting('listen_addresses')")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(listen, "", "no TCP port is opened");
    connection.close().await.unwrap();
    let mode = std::fs::metadata(cluster.socket_dir()).unwrap().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "only the server's account (and root) may reach the socket"
    );
    let url = cluster.url("postgres");
    let mut by_url = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut by_url).await.unwrap();
}

#[tokio::test]
async fn missing_server_programs_say_how_to_get_them() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LocalClusterConfig {
        bin_dir: Some(empty.path().to_path_buf()),
        ..config(dir.path())
    };
    let error = LocalCluster::start(config).await.unwrap_err();
    assert!(
        matches!(error, ClusterError::BinariesNotFound { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(
        message.contains(&empty.path().display().to_string()),
        "{message}"
    );
}
