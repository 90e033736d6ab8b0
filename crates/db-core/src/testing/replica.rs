//! A primary and a streaming replica of it, each a cluster of its own: the replica made with
//! `pg_basebackup -R` as an operator would make one, then started as a standby.

// A fixture that cannot be set up fails its test, with the step that failed.
#![allow(clippy::expect_used)]

use std::path::PathBuf;

use crate::cluster::{Durability, LocalCluster, LocalClusterConfig, PgBinaries};

/// A running primary and replica; stopped and removed when dropped.
pub struct ReplicatedClusters {
    pub primary: LocalCluster,
    pub replica: LocalCluster,
    dir: PathBuf,
}

impl ReplicatedClusters {
    /// Starts a fresh primary, copies it with `pg_basebackup -R` (streaming the WAL it needs)
    /// and starts the copy, which follows the primary.
    ///
    /// # Panics
    /// When a step fails: a test cannot go on without its clusters.
    pub async fn start() -> Self {
        let (dir, server_user) = super::cluster_dir("fodi-replica-pg");
        let config = |name: &str| {
            let mut config = LocalClusterConfig::new(dir.join(name));
            config.durability = Durability::Ephemeral;
            config.settings = vec![("autovacuum".into(), "off".into())];
            config.stop_on_drop = true;
            config
        };
        let primary = LocalCluster::start(config("primary"))
            .await
            .expect("the primary starts");

        let replica_dir = dir.join("replica");
        server_user
            .create_private_dir(&replica_dir)
            .expect("the replica's directory");
        let pg_basebackup = PgBinaries::find(None)
            .expect("the PostgreSQL programs")
            .program("pg_basebackup");
        let output = server_user
            .command(&pg_basebackup)
            .arg("--pgdata")
            .arg(replica_dir.join("data"))
            .arg("--write-recovery-conf")
            .args([
                "--wal-method=stream",
                "--checkpoint=fast",
                "--username=postgres",
            ])
            .arg("--host")
            .arg(primary.socket_dir())
            .arg("--port")
            .arg(primary.port().to_string())
            .output()
            .expect("pg_basebackup runs");
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let replica = LocalCluster::start(config("replica"))
            .await
            .expect("the replica starts");
        Self {
            primary,
            replica,
            dir,
        }
    }

    /// A URL of database `database` on the primary, as the superuser.
    pub fn primary_url(&self, database: &str) -> String {
        self.primary.url(database)
    }

    /// A URL of database `database` on the replica, as the superuser.
    pub fn replica_url(&self, database: &str) -> String {
        self.replica.url(database)
    }

    /// Stops the replica (reads must then go to the primary).
    pub fn stop_replica(&mut self) {
        self.replica.stop().expect("the replica stops");
    }
}

impl Drop for ReplicatedClusters {
    fn drop(&mut self) {
        let _ = self.replica.stop();
        let _ = self.primary.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
