//! Which api-server supervises: when several share a database, only the holder of a
//! PostgreSQL advisory lock runs the supervised processes. The lock lives with the holder's
//! session, so when the holder dies (or loses its connection) PostgreSQL releases it and
//! another instance, trying every [`RETRY`], takes over within seconds. An instance that
//! loses its session stops its processes at once: another may already run them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use db_core::sqlx::postgres::PgConnectOptions;
use db_core::sqlx::{self, Connection, PgConnection};
use orchestrator::Supervisor;
use tokio::task::JoinHandle;

/// The advisory lock's key (one per database): "fodi:orchestrator" as a number.
const LOCK_KEY: i64 = 0x666f_6469_6f72_6368;
/// How often a follower tries to take the lock, and the leader checks its session.
pub const RETRY: Duration = Duration::from_secs(1);

/// Whether this instance supervises; shared with the admin routes.
#[derive(Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, leading: bool) {
        self.0.store(leading, Ordering::Relaxed);
        metrics::gauge!("fodi_supervision_leader").set(if leading { 1.0 } else { 0.0 });
    }
}

/// Competes for the lock for as long as the task runs; the leader starts every process,
/// and stops them when it stops leading.
pub fn elect(
    options: PgConnectOptions,
    supervisor: Arc<Supervisor>,
    leadership: Leadership,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match lead_while_possible(&options, &supervisor, &leadership).await {
                Ok(()) => {}
                Err(error) => tracing::debug!(%error, "supervision election: database unavailable"),
            }
            if leadership.is_leader() {
                leadership.set(false);
                tracing::warn!("lost the supervision lock; stopping the supervised processes");
                supervisor.shutdown().await;
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

/// Takes the lock when free and holds it while the session lives; returns when it could not
/// take it, or when the session failed.
async fn lead_while_possible(
    options: &PgConnectOptions,
    supervisor: &Supervisor,
    leadership: &Leadership,
) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect_with(options).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut connection)
        .await?;
    if !taken {
        let _ = connection.close().await;
        return Ok(());
    }
    leadership.set(true);
    tracing::info!("holding the supervision lock; starting the supervised processes");
    if let Err(error) = supervisor.start_all().await {
        tracing::error!(%error, "not every supervised process could be started");
    }
    loop {
        tokio::time::sleep(RETRY).await;
        // The lock is as alive as the session that holds it.
        sqlx::query("SELECT 1").execute(&mut connection).await?;
    }
}
