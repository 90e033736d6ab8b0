//! The optional in-process tier: a bounded moka cache in front of the database, kept coherent
//! across processes by `LISTEN`/`NOTIFY`.
//!
//! Every set and delete (from any process) sends a notification on [`CHANNEL`] when it
//! commits; every process with the tier listens and drops its copy. Two races are closed:
//!
//! - A fill that read the database before a change but lands after its invalidation would
//!   keep the old value. Each invalidation first bumps an epoch (of the key's stripe, or of
//!   everything for a user or a reconnection); a fill takes the epoch before reading the
//!   database, re-checks it after inserting, and removes what it inserted if an invalidation
//!   arrived meanwhile. Stripes keep writes to other keys from turning fills away.
//! - Notifications sent while the listening connection is down are lost. The tier is bypassed
//!   from the moment the loss is seen until it listens again, and then starts empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::CachedValue;
use crate::ids::UserId;

/// The notification channel of cache invalidations.
pub const CHANNEL: &str = "ai_cache_invalidation";

type Key = (UserId, String);

/// A value held locally, until `deadline` (taken before the database was asked, so it is never
/// later than the entry's expiry in the database).
#[derive(Debug, Clone)]
pub(crate) struct LocalValue {
    pub(crate) value: Arc<CachedValue>,
    pub(crate) deadline: Option<Instant>,
}

impl LocalValue {
    fn live(&self) -> bool {
        self.deadline
            .is_none_or(|deadline| Instant::now() < deadline)
    }
}

struct UntilDeadline;

impl Expiry<Key, LocalValue> for UntilDeadline {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &LocalValue,
        created_at: Instant,
    ) -> Option<Duration> {
        value
            .deadline
            .map(|deadline| deadline.saturating_duration_since(created_at))
    }
}

/// Epoch stripes: an invalidation of one key turns away concurrent fills of 1/256 of the keys.
const STRIPES: usize = 256;

/// Where invalidations stood when a fill began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch {
    everything: u64,
    stripe: u64,
}

pub(crate) struct LocalTier {
    entries: Cache<Key, LocalValue>,
    /// Bumped by invalidations of a user's entries or of all of them.
    everything: AtomicU64,
    /// Bumped by invalidations of one key, by the key's stripe.
    stripes: Box<[AtomicU64]>,
    listening: AtomicBool,
}

fn stripe_of(user: UserId, key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (user, key).hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}

impl LocalTier {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilDeadline)
                .support_invalidation_closures()
                .build(),
            everything: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            listening: AtomicBool::new(false),
        }
    }

    /// The live local copy, if the tier may be trusted now.
    pub(crate) async fn get(&self, user: UserId, key: &str) -> Option<Arc<CachedValue>> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let local = self.entries.get(&(user, key.to_owned())).await?;
        local.live().then_some(local.value)
    }

    /// Taken before reading the database for a fill of `key`.
    pub(crate) fn epoch(&self, user: UserId, key: &str) -> Epoch {
        Epoch {
            everything: self.everything.load(Ordering::SeqCst),
            stripe: self.stripes[stripe_of(user, key)].load(Ordering::SeqCst),
        }
    }

    /// Keeps a value read from the database, unless an invalidation that may concern it
    /// arrived since `epoch`.
    pub(crate) async fn fill(&self, user: UserId, key: &str, value: LocalValue, epoch: Epoch) {
        if !self.listening.load(Ordering::SeqCst) || self.epoch(user, key) != epoch {
            return;
        }
        let entry = (user, key.to_owned());
        self.entries.insert(entry.clone(), value).await;
        if self.epoch(user, key) != epoch {
            self.entries.invalidate(&entry).await;
        }
    }

    pub(crate) async fn invalidate(&self, user: UserId, key: &str) {
        self.stripes[stripe_of(user, key)].fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(&(user, key.to_owned())).await;
    }

    pub(crate) fn invalidate_user(&self, user: UserId) {
        self.everything.fetch_add(1, Ordering::SeqCst);
        // Only fails when the cache was built without invalidation closures, which it is not.
        if self
            .entries
            .invalidate_entries_if(move |(owner, _), _| *owner == user)
            .is_err()
        {
            self.entries.invalidate_all();
        }
    }

    fn clear(&self) {
        self.everything.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    fn set_listening(&self, listening: bool) {
        self.clear();
        self.listening.store(listening, Ordering::SeqCst);
    }
}

/// What an invalidation names.
#[derive(Debug, PartialEq, Eq)]
enum Invalidation {
    Entry(UserId, String),
    User(UserId),
}

/// `"<instance> <user> <key>"` for an entry, `"<instance> <user>"` for all of a user's.
pub(crate) fn payload_for_entry(instance: Uuid, user: UserId, key: &str) -> String {
    format!("{instance} {user} {key}")
}

pub(crate) fn payload_for_user(instance: Uuid, user: UserId) -> String {
    format!("{instance} {user}")
}

/// The invalidation in `payload`, unless it came from `instance` itself (which has updated
/// its own tier already) or cannot be read.
fn parse(payload: &str, instance: Uuid) -> Option<Invalidation> {
    let mut parts = payload.splitn(3, ' ');
    let sender: Uuid = parts.next()?.parse().ok()?;
    if sender == instance {
        return None;
    }
    let user = UserId(parts.next()?.parse().ok()?);
    Some(match parts.next() {
        Some(key) => Invalidation::Entry(user, key.to_owned()),
        None => Invalidation::User(user),
    })
}

/// Subscribes to [`CHANNEL`] and opens the tier.
pub(crate) async fn subscribe(pool: &PgPool, tier: &LocalTier) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    tier.set_listening(true);
    Ok(listener)
}

/// Applies invalidations until the task is aborted; on a lost connection, closes the tier,
/// resubscribes (retrying every second) and reopens it empty.
pub(crate) async fn apply_invalidations(
    pool: PgPool,
    tier: Arc<LocalTier>,
    instance: Uuid,
    mut listener: PgListener,
) {
    loop {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match parse(notification.payload(), instance) {
                    Some(Invalidation::Entry(user, key)) => tier.invalidate(user, &key).await,
                    Some(Invalidation::User(user)) => tier.invalidate_user(user),
                    None => {}
                },
                Ok(None) => {
                    tracing::warn!(
                        "cache invalidations: connection lost; in-process tier off until resubscribed"
                    );
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cache invalidations: listening failed; in-process tier off until resubscribed");
                    break;
                }
            }
        }
        tier.set_listening(false);
        listener = loop {
            match subscribe(&pool, &tier).await {
                Ok(listener) => break listener,
                // The owner closed the pool: the tier stays off for good.
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "cache invalidations: cannot resubscribe; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_own_ones_are_ignored() {
        let (me, other, user) = (Uuid::now_v7(), Uuid::now_v7(), UserId::new());
        let entry = payload_for_entry(other, user, "a key with spaces");
        assert_eq!(
            parse(&entry, me),
            Some(Invalidation::Entry(user, "a key with spaces".into()))
        );
        assert_eq!(
            parse(&payload_for_user(other, user), me),
            Some(Invalidation::User(user))
        );
        assert_eq!(parse(&entry, other), None);
        assert_eq!(parse("garbage", me), None);
    }
}
