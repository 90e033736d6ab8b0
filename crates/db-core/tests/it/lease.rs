//! The lease: one holder among competitors, taken over when the holder's session ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use db_core::lease::{self, Lease, LeaseHolder};
use db_core::sqlx;
use db_core::testing::TestDb;
use test_support::eventually;

const KEY: i64 = 42;
const RETRY: Duration = Duration::from_millis(100);

/// Counts what a competitor is told.
#[derive(Clone, Default)]
struct Counts {
    gained: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
}

impl LeaseHolder for Counts {
    async fn gained(&self) {
        self.gained.fetch_add(1, Ordering::SeqCst);
    }

    async fn lost(&self) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }
}

fn holders(leases: &[Lease]) -> usize {
    leases.iter().filter(|lease| lease.is_held()).count()
}

#[tokio::test]
async fn one_competitor_holds_and_another_takes_over_when_its_session_ends() {
    let db = TestDb::empty().await;
    let counts: Vec<Counts> = (0..3).map(|_| Counts::default()).collect();
    let (leases, tasks): (Vec<Lease>, Vec<_>) = counts
        .iter()
        .map(|holder| lease::compete(db.connect_options(), KEY, RETRY, holder.clone()))
        .unzip();
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            holders(&leases) == 1
        ))
        .await
    );
    // Several retries later, still one.
    tokio::time::sleep(RETRY * 5).await;
    assert_eq!(holders(&leases), 1);
    let first = leases.iter().position(Lease::is_held).unwrap();
    assert_eq!(counts[first].gained.load(Ordering::SeqCst), 1);

    // The holder's session is cut from the server's side: it is told, and another holds.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objid::bigint = $1",
    )
    .bind(KEY)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(cut, [true], "one session holds the lock");
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            counts[first].lost.load(Ordering::SeqCst) == 1
        ))
        .await,
        "the holder whose session ended is told"
    );
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            holders(&leases) == 1
        ))
        .await
    );

    // A holder that dies (its task, and so its connection, gone) is replaced too.
    let holder = leases.iter().position(Lease::is_held).unwrap();
    tasks[holder].abort();
    let others: Vec<Lease> = (0..3)
        .filter(|at| *at != holder)
        .map(|at| leases[at].clone())
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            holders(&others) == 1
        ))
        .await,
        "a survivor takes the lease"
    );
    for task in tasks {
        task.abort();
    }
}
