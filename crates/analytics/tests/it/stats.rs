//! The `daily_stats` rollup: refreshed by one instance at a time, without blocking readers,
//! and late rows are in the next refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use analytics::{Analytics, RefreshOutcome};
use chrono::NaiveDate;
use db_core::sqlx;

use crate::support::Fixture;

async fn insert_events(fx: &Fixture, day: &str, count: i64) {
    sqlx::query(
        "INSERT INTO analytics.events (time, kind, user_id)
         SELECT $1::date + (n % 86400) * interval '1 second', 'kind_' || (n % 5),
                ('00000000-0000-0000-0000-' || lpad((n % 1000)::text, 12, '0'))::uuid
           FROM generate_series(1, $2) n",
    )
    .bind(day)
    .bind(count)
    .execute(fx.db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn readers_are_never_blocked_and_one_instance_refreshes_at_a_time() {
    let fx = Fixture::new().await;
    insert_events(&fx, "2026-11-01", 300_000).await;
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert!(matches!(
        fx.analytics.refresh_daily_stats().await.unwrap(),
        RefreshOutcome::Refreshed { .. }
    ));

    // Readers query the rollup continuously while two instances try to refresh it.
    let refreshing = Arc::new(AtomicBool::new(false));
    let reads_during_refresh = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let analytics = fx.analytics.clone();
        let (refreshing, reads, stop) = (
            refreshing.clone(),
            reads_during_refresh.clone(),
            stop.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = std::time::Instant::now();
                let during = refreshing.load(Ordering::Relaxed);
                let stats = analytics.daily_stats(day, day, None).await.unwrap();
                assert_eq!(stats.iter().map(|s| s.events).sum::<i64>(), 300_000);
                if during && refreshing.load(Ordering::Relaxed) {
                    reads.fetch_add(1, Ordering::Relaxed);
                    worst = worst.max(started.elapsed());
                }
            }
            worst
        }));
    }
    refreshing.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(
        fx.analytics.refresh_daily_stats(),
        fx.analytics.refresh_daily_stats()
    );
    let refresh_took = started.elapsed();
    refreshing.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut worst_read = Duration::ZERO;
    for reader in readers {
        worst_read = worst_read.max(reader.await.unwrap());
    }
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Refreshed { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&RefreshOutcome::AlreadyRunning));
    assert!(
        reads_during_refresh.load(Ordering::Relaxed) > 0,
        "readers completed while the refresh ran ({refresh_took:?})"
    );
    assert!(
        worst_read < refresh_took,
        "no read waited for the refresh: worst {worst_read:?}, refresh {refresh_took:?}"
    );

    // Late rows, for a day already rolled up, are in the next refresh.
    insert_events(&fx, "2026-11-01", 10).await;
    fx.analytics.refresh_daily_stats().await.unwrap();
    let stats = fx.analytics.daily_stats(day, day, None).await.unwrap();
    assert_eq!(stats.iter().map(|s| s.events).sum::<i64>(), 300_010);
    assert_eq!(stats.len(), 5);
    assert!(stats.iter().all(|s| s.unique_users == 200), "{stats:?}");
    let raw = fx.analytics.event_counts(day, day, None).await.unwrap();
    assert_eq!(raw, stats, "the rollup agrees with the raw events");
}
