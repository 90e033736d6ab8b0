//! Whether reads may go to the replica: it answers, and it has replayed what the primary had
//! written `replica_max_lag` ago.
//!
//! Lag is measured in the primary's own WAL positions, not by the replica's replay timestamp
//! (which grows on an idle primary although nothing is missing): every check samples the
//! primary's insert position (everything committed, written to disk or not: with
//! `synchronous_commit = off` the write position trails commits); the replica's lag is the
//! age of the newest sample it has replayed, zero when it has replayed the latest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How often the replica is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the monitor found last, shared with the [`Db`](crate::Db) handles.
#[derive(Debug)]
pub(crate) struct ReplicaState {
    /// Milliseconds behind the primary at the last check (`u64::MAX`: unknown, or down).
    lag_ms: AtomicU64,
    max_lag: Duration,
}

impl ReplicaState {
    /// It answered at its last check, at most `replica_max_lag` behind.
    pub(crate) fn usable(&self) -> bool {
        self.lag().is_some_and(|lag| lag <= self.max_lag)
    }

    pub(crate) fn lag(&self) -> Option<Duration> {
        match self.lag_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// How old data must be for the replica to surely hold it, while [`usable`](Self::usable):
    /// the bound at the last check, which is up to one interval old, plus one more interval.
    pub(crate) fn horizon(&self) -> Duration {
        self.max_lag + 2 * CHECK_EVERY
    }

    fn store(&self, lag: Option<Duration>) {
        let lag_ms = lag.map_or(u64::MAX, |lag| {
            u64::try_from(lag.as_millis()).unwrap_or(u64::MAX - 1)
        });
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
    }
}

/// Checks the replica every [`CHECK_EVERY`] until either pool is closed or every
/// [`Db`](crate::Db) holding the returned state is gone.
pub(crate) fn spawn_monitor(
    primary: PgPool,
    replica: PgPool,
    max_lag: Duration,
) -> Arc<ReplicaState> {
    let state = Arc::new(ReplicaState {
        lag_ms: AtomicU64::new(u64::MAX),
        max_lag,
    });
    let shared = state.clone();
    tokio::spawn(async move {
        let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            ticks.tick().await;
            // The task's own handle is the last: nobody reads through these pools any more.
            if primary.is_closed() || replica.is_closed() || Arc::strong_count(&shared) == 1 {
                return;
            }
            let checked = check(&primary, &replica, &mut samples, shared.horizon()).await;
            let answered = checked.is_ok();
            let was_usable = shared.usable();
            let lag = checked.unwrap_or_else(|reason| {
                if was_usable || first {
                    tracing::warn!(%reason, "reads go to the primary: the replica cannot be checked");
                }
                None
            });
            shared.store(lag);
            let usable = shared.usable();
            match (was_usable, usable) {
                (true, false) if answered => tracing::warn!(
                    lag = ?lag,
                    max_lag = ?max_lag,
                    "reads go to the primary: the replica lags behind"
                ),
                (false, true) => tracing::info!(lag = ?lag, "reads go to the replica"),
                _ => {}
            }
            first = false;
        }
    });
    state
}

/// The replica's lag (`None`: more than the samples cover), or why it cannot be told.
async fn check(
    primary: &PgPool,
    replica: &PgPool,
    samples: &mut VecDeque<(Instant, i64)>,
    keep: Duration,
) -> Result<Option<Duration>, String> {
    let now = Instant::now();
    let written: i64 = within(simple_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
        primary,
    ))
    .await
    .map_err(|error| format!("the primary's WAL position: {error}"))?;
    let replayed: Option<i64> = within(simple_scalar(
        "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
        replica,
    ))
    .await
    .map_err(|error| format!("the replica's replay position: {error}"))?;
    let replayed = replayed.ok_or("replica_url names a server that is not in recovery")?;
    samples.push_back((now, written));
    // Samples older than the bound (and one check) cannot change the verdict.
    while samples
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > keep)
    {
        samples.pop_front();
    }
    if replayed >= written {
        return Ok(Some(Duration::ZERO));
    }
    Ok(samples
        .iter()
        .rev()
        .find(|(_, position)| *position <= replayed)
        .map(|(at, _)| now.duration_since(*at)))
}

/// The first column of a one-row answer, by the simple protocol: these pools may be behind a
/// pooler in transaction mode, where an extended-protocol statement outside a transaction is
/// unsafe (crate::pooling).
async fn simple_scalar<T>(sql: &'static str, pool: &PgPool) -> Result<T, sqlx::Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let row = sqlx::raw_sql(sql).fetch_one(pool).await?;
    sqlx::Row::try_get(&row, 0)
}

async fn within<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(CHECK_EVERY, query).await {
        Ok(answer) => answer.map_err(|error| error.to_string()),
        Err(_) => Err("no answer within a second".to_owned()),
    }
}
