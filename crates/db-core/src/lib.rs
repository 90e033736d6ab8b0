//! The lowest layer of the FODI workspace: everything the data crates share about PostgreSQL.
//!
//! - [`DbConfig`] and [`Db`]: typed settings and the primary (plus optional read-replica) pools;
//!   [`DirectPool`] for hot single statements that should not pay sqlx's ping on release.
//! - [`pooling`]: working through a pooler in transaction mode (PgBouncer); statements run in
//!   a [`Unit`] or a transaction from [`Db::begin`].
//! - [`DbError`]: database failures classified into what a caller acts on, and
//!   [`with_retry`] for the retryable ones (serialisation failures, deadlocks).
//! - [`migrate`]: refinery driven over sqlx, one migration set and history table per schema
//!   owner, applied under an advisory lock; [`migrate::core_set`] is the core backend's set.
//! - [`lease`]: a role one process of several holds at a time, as a session advisory lock.
//! - [`LocalCluster`]: the embedded default, a private PostgreSQL cluster in a directory;
//!   [`DatabaseTarget::resolve`] picks it when no server is configured.
//! - [`uuid_id!`]: typed UUID identifiers for the data crates' rows.
//! - `testing` (feature `testing`): `testing::TestDb`, a fresh migrated database per test.
//!
//! Architecture invariant: db-core depends on no crate of this workspace and knows nothing of
//! HTTP or of any schema owner's tables (beyond embedding the core set's files). It reads no
//! configuration itself; the only environment it consults is where PostgreSQL's programs are
//! installed (`PG_BIN`, `PATH`) and, in the `testing` feature, `TEST_DATABASE_URL` and
//! `PGBOUNCER`.

pub mod cluster;
mod config;
mod db;
mod direct;
mod error;
mod ids;
pub mod lease;
pub mod metrics;
pub mod pooling;
pub use ids::UserId;
pub mod migrate;
mod replica;
mod retry;
pub mod settings;
mod target;
#[cfg(feature = "testing")]
pub mod testing;

pub use cluster::{ClusterError, Durability, LocalCluster, LocalClusterConfig};
pub use config::{DbConfig, redact_url};
pub use db::{Db, acting_as, describe_target};
pub use direct::{DirectConnection, DirectPool, Ended, PoolUsage, Scope};
pub use error::{DbError, checked_column};
pub use pooling::{Pooling, Unit};
pub use retry::{RetryPolicy, RetryableError, with_retry};
pub use target::{
    DatabaseTarget, EMBEDDED_DATABASE, connect, create_database_if_missing, quote_identifier,
};

/// Re-exported so dependants use the exact sqlx this crate was built with.
pub use sqlx;
