//! Which api-server supervises: when several share a database, only the holder of the
//! supervision lease ([`db_core::lease`]) runs the supervised processes; it stops them as soon
//! as it loses the lease, and another instance takes over within about [`RETRY`].

use std::sync::Arc;
use std::time::Duration;

use db_core::lease::{self, Lease, LeaseHolder};
use db_core::sqlx::postgres::PgConnectOptions;
use orchestrator::Supervisor;
use tokio::task::JoinHandle;

/// The advisory lock's key (one per database): "fodi:orchestrator" as a number.
const LOCK_KEY: i64 = 0x666f_6469_6f72_6368;
/// How often a follower tries to take the lease, and the leader checks its session.
pub const RETRY: Duration = Duration::from_secs(1);

/// The supervisor, as the holder of the lease.
struct Supervision(Arc<Supervisor>);

impl LeaseHolder for Supervision {
    async fn gained(&self) {
        metrics::gauge!("fodi_supervision_leader").set(1.0);
        tracing::info!("holding the supervision lock; starting the supervised processes");
        if let Err(error) = self.0.start_all().await {
            tracing::error!(%error, "not every supervised process could be started");
        }
    }

    async fn lost(&self) {
        metrics::gauge!("fodi_supervision_leader").set(0.0);
        tracing::warn!("lost the supervision lock; stopping the supervised processes");
        self.0.shutdown().await;
    }
}

/// Competes for the lease for as long as the task runs; the returned [`Lease`] tells the
/// admin routes whether this instance leads.
pub fn elect(options: PgConnectOptions, supervisor: Arc<Supervisor>) -> (Lease, JoinHandle<()>) {
    lease::compete(options, LOCK_KEY, RETRY, Supervision(supervisor))
}
