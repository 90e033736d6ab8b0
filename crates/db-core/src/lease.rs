//! A role one process of several holds at a time (running supervised processes, say): the
//! holder of a PostgreSQL session-level advisory lock.
//!
//! The lock lives with the holder's session, so when the holder dies or loses its connection,
//! PostgreSQL releases it and another process, trying every `retry`, takes it within about
//! that long. A holder checks its session every `retry` too, and on losing it is told at once
//! ([`LeaseHolder::lost`]): another process may already hold the role.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

/// What a process does as it gains and loses the role.
pub trait LeaseHolder: Send + Sync + 'static {
    /// The lock is taken: start the role's work.
    fn gained(&self) -> impl Future<Output = ()> + Send;
    /// The session holding the lock failed: stop the role's work now.
    fn lost(&self) -> impl Future<Output = ()> + Send;
}

/// Whether this process holds the role now; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Lease(Arc<AtomicBool>);

impl Lease {
    pub fn is_held(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Competes for the advisory lock `key` of the database `options` name for as long as the
/// returned task runs (one connection of its own, opened on each attempt).
pub fn compete<H: LeaseHolder>(
    options: PgConnectOptions,
    key: i64,
    retry: Duration,
    holder: H,
) -> (Lease, JoinHandle<()>) {
    let lease = Lease::default();
    let held = lease.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Err(error) = hold_while_possible(&options, key, retry, &held, &holder).await {
                tracing::debug!(%error, key, "lease: database unavailable");
            }
            if held.0.swap(false, Ordering::SeqCst) {
                holder.lost().await;
            }
            tokio::time::sleep(retry).await;
        }
    });
    (lease, task)
}

/// Takes the lock when free and holds it while the session lives; returns when it could not
/// take it, or when the session failed.
async fn hold_while_possible<H: LeaseHolder>(
    options: &PgConnectOptions,
    key: i64,
    retry: Duration,
    held: &Lease,
    holder: &H,
) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect_with(options).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut connection)
        .await?;
    if !taken {
        let _ = connection.close().await;
        return Ok(());
    }
    held.0.store(true, Ordering::SeqCst);
    holder.gained().await;
    loop {
        tokio::time::sleep(retry).await;
        // The lock is as alive as the session that holds it.
        sqlx::query("SELECT 1").execute(&mut connection).await?;
    }
}
