//! A fresh PostgreSQL cluster for one benchmark run, with the workspace's schemas migrated.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::Context;
use db_core::migrate::{MigrationSet, Migrator, UpOptions};
use db_core::{
    Db, DbConfig, Durability, LocalCluster, LocalClusterConfig, create_database_if_missing,
};

use crate::report::progress;

/// The benchmark's cluster and the application database on it.
pub struct BenchCluster {
    /// Shared with the reference programs run beside the scenarios.
    pub cluster: Arc<LocalCluster>,
    pub db: Db,
    /// Keeps the directory until the run ends.
    _dir: tempfile::TempDir,
}

/// Name of the database the scenarios use (pgbench gets one of its own).
pub const DATABASE: &str = "fodi_bench";

impl BenchCluster {
    /// Starts a durable cluster (fsync and synchronous commit on, as production runs it)
    /// in a temporary directory and migrates `sets` into its application database.
    pub async fn start(sets: Vec<MigrationSet>, pool_size: u32) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("fodi-bench-")
            .tempdir_in(std::env::temp_dir())?;
        // The server may run as another account (when we are root): let it pass through.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        // Durable, with the memory and WAL settings a server of this size would be given;
        // pgbench runs on the same cluster, so both sides get the same server.
        let config = LocalClusterConfig {
            durability: Durability::Durable,
            settings: [
                ("max_connections", "200"),
                ("shared_buffers", "1GB"),
                ("max_wal_size", "8GB"),
                ("checkpoint_timeout", "15min"),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
            ..LocalClusterConfig::new(dir.path().join("pg"))
        };
        let cluster = LocalCluster::start(config)
            .await
            .context("cannot start the benchmark cluster")?;
        progress(&format!("cluster at {}", cluster.data_dir().display()));
        create_database_if_missing(&cluster.connect_options("postgres"), DATABASE).await?;
        let options = cluster.connect_options(DATABASE);
        let mut connection = db_core::connect(&options).await?;
        Migrator::new(sets)?
            .up(&mut connection, UpOptions::default())
            .await?;
        let settings = DbConfig {
            max_connections: pool_size,
            statement_timeout: None,
            ..DbConfig::default()
        };
        let db = Db::connect_with(&settings, options).await?;
        Ok(Self {
            cluster: Arc::new(cluster),
            db,
            _dir: dir,
        })
    }

    /// Inserts `count` users (`bench-N@example.com`); returns their ids in a stable order.
    pub async fn create_users(&self, count: usize) -> anyhow::Result<Vec<uuid::Uuid>> {
        db_core::sqlx::query(
            "INSERT INTO users (email) SELECT 'bench-' || n || '@example.com' FROM generate_series(1, $1) n",
        )
        .bind(count as i64)
        .execute(self.db.primary())
        .await?;
        Ok(
            db_core::sqlx::query_scalar("SELECT id FROM users ORDER BY email")
                .fetch_all(self.db.primary())
                .await?,
        )
    }
}
