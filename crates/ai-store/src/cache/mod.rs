//! The response cache: JSON values by `(user, key)` with an expiry, in `ai.cache_entries`.
//!
//! - An expired entry is never returned: reads compare the expiry with the database's clock,
//!   whether or not cleanup has removed the row yet.
//! - A hit writes nothing: hit counts are gathered in memory and written in batches every
//!   [`CacheConfig::hit_flush_interval`](crate::CacheConfig::hit_flush_interval). A sliding
//!   entry is extended by a hit only once half its window has passed.
//! - [`ResponseCache::get_or_compute`] lets concurrent misses of one key in this process wait
//!   for the first, which computes and stores the value (a stampede guard).
//! - An optional in-process tier (module `local`) answers repeated hits from memory.

mod flight;
mod hits;
mod local;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use db_core::{Db, DirectPool, Ended, with_retry};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::AiConfig;
use crate::error::AiError;
use crate::ids::UserId;
use crate::validate;
use flight::SingleFlight;
use hits::HitCounter;
use local::{LocalTier, LocalValue};

pub use local::CHANNEL as INVALIDATION_CHANNEL;

/// Longest cache key, in characters (the schema's limit).
pub const MAX_KEY_CHARS: usize = 512;

/// How long an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// [`CacheConfig::default_ttl`](crate::CacheConfig::default_ttl) from when it is set.
    Default,
    /// This long from when it is set.
    Absolute(Duration),
    /// This long from its last hit (and from when it is set).
    Sliding(Duration),
    /// Until deleted or replaced.
    Never,
}

/// The longest lifetime an entry may be given (a year and a day): beyond it, an entry is
/// meant to live for ever ([`Ttl::Never`]).
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

impl Ttl {
    /// The lifetime a request describes in whole seconds: none given is the default (or
    /// [`Ttl::Never`] with `forever`); `sliding` renews it on each hit. Refuses a lifetime of
    /// zero or beyond [`MAX_TTL`], a sliding entry without one, and `forever` with one.
    pub fn from_seconds(
        seconds: Option<u64>,
        sliding: bool,
        forever: bool,
    ) -> Result<Self, AiError> {
        let invalid = |reason: &str| AiError::InvalidField {
            field: "ttl_seconds",
            reason: reason.into(),
        };
        match (seconds, sliding, forever) {
            (None, false, false) => Ok(Self::Default),
            (None, false, true) => Ok(Self::Never),
            (None, true, _) => Err(invalid("a sliding entry needs ttl_seconds")),
            (Some(_), _, true) => Err(invalid("forever takes no ttl_seconds")),
            (Some(seconds), sliding, false) => {
                let lifetime = Duration::from_secs(seconds);
                if lifetime.is_zero() || lifetime > MAX_TTL {
                    return Err(invalid("must be 1 second to 366 days"));
                }
                Ok(if sliding {
                    Self::Sliding(lifetime)
                } else {
                    Self::Absolute(lifetime)
                })
            }
        }
    }
}

/// A cached value and what is known of its entry.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = CacheEntry))]
pub struct CachedValue {
    /// The JSON text as stored: a hit hands it on without building a tree of it, which a
    /// server answering with it would only write out again. [`CachedValue::parse`] reads it.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub value: Box<RawValue>,
    /// `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set for sliding entries: each hit moves the expiry to this long after it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SerializedDuration>))]
    pub sliding_ttl: Option<Duration>,
    /// Hits so far, including those not yet written (as of the last database read when the
    /// answer came from the in-process tier).
    pub hit_count: i64,
    pub created_at: DateTime<Utc>,
}

impl CachedValue {
    /// The value as a `T` (a [`serde_json::Value`] for any shape).
    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.value.get())
    }
}

/// Equal values, not equal texts: `{"a":1,"b":2}` equals `{"b": 2, "a": 1}`.
impl PartialEq for CachedValue {
    fn eq(&self, other: &Self) -> bool {
        let same_value = self.value.get() == other.value.get()
            || matches!(
                (self.parse::<serde_json::Value>(), other.parse::<serde_json::Value>()),
                (Ok(mine), Ok(theirs)) if mine == theirs
            );
        same_value
            && self.expires_at == other.expires_at
            && self.sliding_ttl == other.sliding_ttl
            && self.hit_count == other.hit_count
            && self.created_at == other.created_at
    }
}

/// How serde writes a [`Duration`]: whole seconds and the nanoseconds beyond them (the
/// document's shape of [`CachedValue::sliding_ttl`]).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(as = Duration)]
#[allow(dead_code)]
pub struct SerializedDuration {
    secs: u64,
    nanos: u32,
}

/// Lookups since this cache was started, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Answered by the in-process tier.
    pub local_hits: u64,
    /// Answered by the database.
    pub database_hits: u64,
    /// No entry.
    pub misses: u64,
    /// An entry past its expiry (not returned).
    pub expired: u64,
}

impl CacheStats {
    /// Hits over lookups; 0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.local_hits + self.database_hits;
        let lookups = hits + self.misses + self.expired;
        if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        }
    }
}

/// The response cache, per user.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The live value of `key`, counting a hit.
    async fn get(&self, user: UserId, key: &str) -> Result<Option<CachedValue>, AiError>;

    /// The live values of many keys, in the order asked, read in one database statement
    /// (keys the in-process tier holds are answered from it). Each key counts a hit or a miss
    /// as [`get`](Self::get) would; a key may appear more than once. One invalid key fails the
    /// whole call before anything is read.
    async fn get_many(&self, keys: &[(UserId, &str)]) -> Result<Vec<Option<CachedValue>>, AiError>;

    /// Stores `value` under `key`, replacing any entry (its hit count starts again at 0).
    async fn set(
        &self,
        user: UserId,
        key: &str,
        value: &serde_json::Value,
        ttl: Ttl,
    ) -> Result<(), AiError>;

    /// Removes `key`; tells whether there was an entry.
    async fn delete(&self, user: UserId, key: &str) -> Result<bool, AiError>;

    /// The live value of `key`; on a miss, runs `compute` and stores its value. Concurrent
    /// callers missing the same key in this process wait for the first one's result instead
    /// of computing it again. `compute` is only polled on a miss, and a failure stores nothing.
    async fn get_or_compute<'a>(
        &'a self,
        user: UserId,
        key: &'a str,
        ttl: Ttl,
        compute: BoxFuture<'a, Result<serde_json::Value, AiError>>,
    ) -> Result<CachedValue, AiError>;

    /// Removes every expired entry, in bounded batches; returns how many.
    async fn cleanup_expired(&self) -> Result<u64, AiError>;

    /// Lookups so far, by outcome. The same counts go to the `metrics` facade as
    /// `ai_cache_lookups_total{outcome}`.
    fn stats(&self) -> CacheStats;
}

/// The PostgreSQL response cache. Cheap to clone; background work (writing hit counts,
/// applying invalidations) stops when the last clone is dropped.
#[derive(Clone)]
pub struct PgResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// Reads and writes of single entries: one statement each.
    statements: DirectPool,
    config: AiConfig,
    hits: HitCounter,
    flights: SingleFlight<(UserId, String)>,
    local: Option<Arc<LocalTier>>,
    /// Names this process in invalidations, so it ignores its own.
    instance: Uuid,
    counters: Counters,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.statements.close();
    }
}

#[derive(Default)]
struct Counters {
    local_hits: AtomicU64,
    database_hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    LocalHit,
    DatabaseHit,
    Miss,
    Expired,
}

impl Counters {
    fn record(&self, outcome: Outcome) {
        let (counter, label) = match outcome {
            Outcome::LocalHit => (&self.local_hits, "hit_local"),
            Outcome::DatabaseHit => (&self.database_hits, "hit_database"),
            Outcome::Miss => (&self.misses, "miss"),
            Outcome::Expired => (&self.expired, "expired"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ai_cache_lookups_total", "outcome" => label).increment(1);
    }
}

/// Runs `$body` on a statement connection, retrying when that may succeed; the connection
/// goes back to the pool only when the server answered (see [`DirectPool`]).
macro_rules! on_statement_connection {
    ($inner:expr, |$connection:ident| $body:expr) => {
        with_retry(&$inner.config.retry, || async {
            let mut pooled = $inner.statements.acquire().await?;
            let mut scope = pooled.scope().await?;
            let $connection: &mut PgConnection = &mut scope;
            let result = $body.await;
            let ended = Ended::of(&result, |error| match error {
                AiError::Db(error) => error.sqlstate().is_some(),
                _ => true,
            });
            if scope.end(ended).await? {
                pooled.release();
            }
            result
        })
        .await
    };
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    value: sqlx::types::Json<Box<RawValue>>,
    expires_at: Option<DateTime<Utc>>,
    sliding_ms: Option<i64>,
    hit_count: i64,
    created_at: DateTime<Utc>,
    expired: bool,
    remaining_ms: Option<i64>,
    renew: bool,
}

/// The columns of an [`EntryRow`], read from `ai.cache_entries`.
macro_rules! entry_columns {
    () => {
        "value, expires_at, (extract(epoch FROM sliding_ttl) * 1000)::bigint AS sliding_ms,
         hit_count, created_at, coalesce(expires_at <= now(), false) AS expired,
         floor(extract(epoch FROM expires_at - now()) * 1000)::bigint AS remaining_ms,
         coalesce(expires_at - now() < sliding_ttl / 2, false) AS renew"
    };
}

const GET_SQL: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM ai.cache_entries WHERE user_id = $1 AND cache_key = $2"
);

/// An [`EntryRow`] of a batch read: `n` is the 1-based position of its key in the batch.
#[derive(sqlx::FromRow)]
struct BatchEntryRow {
    n: i64,
    #[sqlx(flatten)]
    entry: EntryRow,
}

/// [`GET_SQL`] for many keys at once: `$1` users and `$2` keys, paired by position. One
/// primary-key lookup per key: the `LIMIT` keeps the planner from flattening the lateral
/// read into a join, whose generic plan (prepared statements switch to it) hashes the keys
/// and scans the whole table.
const GET_MANY_SQL: &str = concat!(
    "SELECT q.n, e.*
       FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS q(user_id, cache_key, n)
      CROSS JOIN LATERAL (
          SELECT ",
    entry_columns!(),
    " FROM ai.cache_entries c
            WHERE c.user_id = q.user_id AND c.cache_key = q.cache_key
            LIMIT 1
      ) e"
);

/// Moves a sliding entry's expiry to a full window from now, unless it expired meanwhile.
const RENEW_SQL: &str = "UPDATE ai.cache_entries SET expires_at = now() + sliding_ttl
      WHERE user_id = $1 AND cache_key = $2 AND sliding_ttl IS NOT NULL AND expires_at > now()
  RETURNING expires_at, floor(extract(epoch FROM expires_at - now()) * 1000)::bigint";

/// `$4`: milliseconds to live (NULL: forever); `$5`: sliding window in milliseconds.
macro_rules! store_sql {
    () => {
        "INSERT INTO ai.cache_entries AS e (user_id, cache_key, value, expires_at, sliding_ttl)
         VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond', $5 * interval '1 millisecond')
         ON CONFLICT (user_id, cache_key) DO UPDATE
            SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, sliding_ttl = EXCLUDED.sliding_ttl,
                hit_count = 0, last_hit_at = NULL, created_at = now()
      RETURNING e.expires_at, e.created_at, floor(extract(epoch FROM e.expires_at - now()) * 1000)::bigint"
    };
}
const STORE_SQL: &str = store_sql!();
/// [`STORE_SQL`] and an invalidation (`$6` channel, `$7` payload), sent when it commits.
const STORE_AND_NOTIFY_SQL: &str = concat!(
    "WITH stored AS (",
    store_sql!(),
    ") SELECT stored.* FROM stored, pg_notify($6, $7)"
);

const DELETE_SQL: &str = "DELETE FROM ai.cache_entries WHERE user_id = $1 AND cache_key = $2";

/// [`DELETE_SQL`] and an invalidation (`$3` channel, `$4` payload), sent whether or not there
/// was an entry: another process may hold a copy of one removed by cleanup.
const DELETE_AND_NOTIFY_SQL: &str = "WITH removed AS (
         DELETE FROM ai.cache_entries WHERE user_id = $1 AND cache_key = $2 RETURNING 1
     )
     SELECT (SELECT count(*) FROM removed) FROM pg_notify($3, $4)";

/// The deadline of a value read at `asked` with `remaining_ms` left by the database's clock.
fn deadline(asked: Instant, remaining_ms: Option<i64>) -> Option<Instant> {
    remaining_ms.map(|ms| asked + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl PgResponseCache {
    /// Starts the cache: with an in-process tier, subscribes to invalidations before it
    /// returns, so no change made after this call can be missed.
    pub async fn start(db: Db, config: AiConfig) -> Result<Self, AiError> {
        // Every statement on these connections finds its rows by the primary key, and a batch
        // read's generic plan does so too (see GET_MANY_SQL), whereas PostgreSQL's default
        // keeps planning it afresh for each call: the custom plan, knowing the batch size,
        // always looks cheaper, and planning costs more than the lookups.
        let statements = DirectPool::on(
            &db,
            config.cache.connections.max(1),
            &[("plan_cache_mode", "force_generic_plan")],
        );
        let local = match config.cache.local_entries {
            0 => None,
            capacity => Some(Arc::new(LocalTier::new(capacity))),
        };
        let instance = Uuid::now_v7();
        let listener = match &local {
            Some(tier) => Some(local::subscribe(db.session_pool(), tier).await?),
            None => None,
        };
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let mut tasks = vec![tokio::spawn(flush_hits_periodically(
                weak.clone(),
                config.cache.hit_flush_interval,
            ))];
            if let (Some(tier), Some(listener)) = (&local, listener) {
                tasks.push(tokio::spawn(local::apply_invalidations(
                    db.session_pool().clone(),
                    tier.clone(),
                    instance,
                    listener,
                )));
            }
            Inner {
                db,
                statements,
                config,
                hits: HitCounter::default(),
                flights: SingleFlight::new(),
                local,
                instance,
                counters: Counters::default(),
                tasks,
            }
        });
        Ok(Self { inner })
    }

    /// Writes the hit counts gathered so far; returns how many entries it updated. Runs
    /// periodically by itself; [`shutdown`](Self::shutdown) runs it a last time.
    pub async fn flush_hits(&self) -> Result<u64, AiError> {
        self.inner.hits.flush(&self.inner.db).await
    }

    /// The cache's own statement connections now (`ai.cache.connections` at most).
    pub fn statements_usage(&self) -> db_core::PoolUsage {
        self.inner.statements.usage()
    }

    /// Stops the background work (periodic hit writes, invalidation listener), writes the hit
    /// counts gathered since the last write, and closes the cache's own connections. Call it
    /// once, after the last request; reads after it fail with a closed pool.
    pub async fn shutdown(&self) -> Result<u64, AiError> {
        for task in &self.inner.tasks {
            task.abort();
        }
        let flushed = self.flush_hits().await;
        self.inner.statements.shutdown().await;
        flushed
    }

    /// Drops every local copy of `user`'s entries here and, through an invalidation, in every
    /// other process (after [`crate::PersonalData::forget_user`] removed them).
    pub(crate) async fn forget_user_locally(&self, user: UserId) {
        self.inner.hits.forget_user(user);
        if let Some(tier) = &self.inner.local {
            tier.invalidate_user(user);
        }
    }

    /// The invalidation payload announcing that all of `user`'s entries are gone.
    pub(crate) fn user_invalidation(&self, user: UserId) -> Option<String> {
        self.inner
            .config
            .cache
            .notify_invalidations
            .then(|| local::payload_for_user(self.inner.instance, user))
    }

    /// The database read of `get`: the entry if live, renewing a sliding one when due. A miss
    /// is counted only when `count_miss` (a lookup repeated under the stampede guard is not a
    /// second miss).
    async fn read(
        &self,
        user: UserId,
        key: &str,
        count_miss: bool,
    ) -> Result<Option<(CachedValue, Option<Instant>)>, AiError> {
        let inner = &self.inner;
        let asked = Instant::now();
        let row: Option<EntryRow> = on_statement_connection!(inner, |connection| async {
            let row = sqlx::query_as(GET_SQL)
                .bind(user)
                .bind(key)
                .fetch_optional(&mut *connection)
                .await?;
            Ok::<_, AiError>(row)
        })?;
        self.accept(user, key, row, asked, count_miss).await
    }

    /// What a read of `key` found (`row`, read at `asked`): the value if live, after renewing
    /// a sliding entry when due, with the lookup's outcome counted.
    async fn accept(
        &self,
        user: UserId,
        key: &str,
        row: Option<EntryRow>,
        asked: Instant,
        count_miss: bool,
    ) -> Result<Option<(CachedValue, Option<Instant>)>, AiError> {
        let inner = &self.inner;
        let Some(row) = row else {
            if count_miss {
                inner.counters.record(Outcome::Miss);
            }
            return Ok(None);
        };
        if row.expired {
            if count_miss {
                inner.counters.record(Outcome::Expired);
            }
            return Ok(None);
        }
        let (mut expires_at, mut remaining_ms) = (row.expires_at, row.remaining_ms);
        if row.renew {
            let renewed: Option<(DateTime<Utc>, i64)> =
                on_statement_connection!(inner, |connection| async {
                    let renewed = sqlx::query_as(RENEW_SQL)
                        .bind(user)
                        .bind(key)
                        .fetch_optional(&mut *connection)
                        .await?;
                    Ok::<_, AiError>(renewed)
                })?;
            if let Some((renewed_at, renewed_ms)) = renewed {
                (expires_at, remaining_ms) = (Some(renewed_at), Some(renewed_ms));
            }
        }
        inner.counters.record(Outcome::DatabaseHit);
        inner.hits.record(user, key);
        let value = CachedValue {
            value: row.value.0,
            expires_at,
            sliding_ttl: row
                .sliding_ms
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            hit_count: row.hit_count + inner.hits.unwritten(user, key),
            created_at: row.created_at,
        };
        Ok(Some((value, deadline(asked, remaining_ms))))
    }

    /// Stores an entry; returns it as stored.
    async fn store(
        &self,
        user: UserId,
        key: &str,
        value: &serde_json::Value,
        ttl: Ttl,
    ) -> Result<CachedValue, AiError> {
        check_key(key)?;
        validate::json("value", value)?;
        let inner = &self.inner;
        let (live_ms, sliding) = match ttl {
            Ttl::Default => (Some(millis(inner.config.cache.default_ttl)), None),
            Ttl::Absolute(duration) => (Some(millis(duration)), None),
            Ttl::Sliding(duration) => (Some(millis(duration)), Some(duration)),
            Ttl::Never => (None, None),
        };
        if live_ms == Some(0) || sliding == Some(Duration::ZERO) {
            return Err(AiError::InvalidField {
                field: "ttl",
                reason: "must be at least one millisecond".into(),
            });
        }
        // Written out once: the text is both what is stored and what is returned.
        let value =
            serde_json::value::to_raw_value(value).map_err(|error| AiError::InvalidField {
                field: "value",
                reason: error.to_string(),
            })?;
        let json = sqlx::types::Json(&value);
        let asked = Instant::now();
        let notify = inner.config.cache.notify_invalidations;
        let payload = local::payload_for_entry(inner.instance, user, key);
        let (expires_at, created_at, remaining_ms): (
            Option<DateTime<Utc>>,
            DateTime<Utc>,
            Option<i64>,
        ) = on_statement_connection!(inner, |connection| async {
            let query = sqlx::query_as(if notify {
                STORE_AND_NOTIFY_SQL
            } else {
                STORE_SQL
            })
            .bind(user)
            .bind(key)
            .bind(json)
            .bind(live_ms)
            .bind(sliding.map(millis));
            let query = if notify {
                query.bind(local::CHANNEL).bind(&payload)
            } else {
                query
            };
            let stored = query
                .fetch_one(&mut *connection)
                .await
                .map_err(|error| AiError::or_unknown_user(error, user))?;
            Ok::<_, AiError>(stored)
        })?;
        inner.hits.forget(user, key);
        let stored = CachedValue {
            value,
            expires_at,
            sliding_ttl: sliding,
            hit_count: 0,
            created_at,
        };
        if let Some(tier) = &inner.local {
            tier.invalidate(user, key).await;
            if sliding.is_none() {
                let epoch = tier.epoch(user, key);
                let local = LocalValue {
                    value: Arc::new(stored.clone()),
                    deadline: deadline(asked, remaining_ms),
                };
                tier.fill(user, key, local, epoch).await;
            }
        }
        Ok(stored)
    }
}

/// Refuses a key no entry can have (empty, too long, or holding a NUL character),
/// as every call taking a key does. Useful before queueing keys for
/// [`ResponseCache::get_many`], where one bad key fails the whole call.
pub fn check_key(key: &str) -> Result<(), AiError> {
    validate::text("key", key, MAX_KEY_CHARS, false)
}

/// Writes gathered hit counts every `interval` until the cache is dropped.
async fn flush_hits_periodically(inner: std::sync::Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(error) = inner.hits.flush(&inner.db).await {
            tracing::warn!(%error, "writing cache hit counts failed; they are kept for the next flush");
        }
    }
}

impl PgResponseCache {
    /// [`ResponseCache::get`], counting a miss only when `count_miss`.
    async fn lookup(
        &self,
        user: UserId,
        key: &str,
        count_miss: bool,
    ) -> Result<Option<CachedValue>, AiError> {
        check_key(key)?;
        if let Some(value) = self.local_hit(user, key).await {
            return Ok(Some(value));
        }
        let epoch = self.local_epoch(user, key);
        let Some((value, deadline)) = self.read(user, key, count_miss).await? else {
            return Ok(None);
        };
        self.keep_locally(user, key, &value, deadline, epoch).await;
        Ok(Some(value))
    }

    /// The in-process tier's live copy of `key`, counted as a hit.
    async fn local_hit(&self, user: UserId, key: &str) -> Option<CachedValue> {
        let inner = &self.inner;
        let value = inner.local.as_ref()?.get(user, key).await?;
        inner.counters.record(Outcome::LocalHit);
        inner.hits.record(user, key);
        Some((*value).clone())
    }

    /// Taken before a database read that may fill the in-process tier (see [`LocalTier::fill`]).
    fn local_epoch(&self, user: UserId, key: &str) -> Option<local::Epoch> {
        self.inner.local.as_ref().map(|tier| tier.epoch(user, key))
    }

    /// Keeps a value read from the database in the in-process tier, if there is one and the
    /// entry is not sliding (each hit of a sliding entry must reach the database).
    async fn keep_locally(
        &self,
        user: UserId,
        key: &str,
        value: &CachedValue,
        deadline: Option<Instant>,
        epoch: Option<local::Epoch>,
    ) {
        if let (Some(tier), Some(epoch), None) = (&self.inner.local, epoch, value.sliding_ttl) {
            let local = LocalValue {
                value: Arc::new(value.clone()),
                deadline,
            };
            tier.fill(user, key, local, epoch).await;
        }
    }
}

#[async_trait]
impl ResponseCache for PgResponseCache {
    async fn get(&self, user: UserId, key: &str) -> Result<Option<CachedValue>, AiError> {
        self.lookup(user, key, true).await
    }

    async fn get_many(&self, keys: &[(UserId, &str)]) -> Result<Vec<Option<CachedValue>>, AiError> {
        for (_, key) in keys {
            check_key(key)?;
        }
        let inner = &self.inner;
        let mut found: Vec<Option<CachedValue>> = vec![None; keys.len()];
        // Positions still to read from the database, with the tier's epoch taken before it.
        let mut unread = Vec::with_capacity(keys.len());
        for (position, (user, key)) in keys.iter().enumerate() {
            match self.local_hit(*user, key).await {
                Some(value) => found[position] = Some(value),
                None => unread.push((position, self.local_epoch(*user, key))),
            }
        }
        if unread.is_empty() {
            return Ok(found);
        }
        let users: Vec<Uuid> = unread.iter().map(|(at, _)| keys[*at].0.0).collect();
        let names: Vec<&str> = unread.iter().map(|(at, _)| keys[*at].1).collect();
        let asked = Instant::now();
        let rows: Vec<BatchEntryRow> = on_statement_connection!(inner, |connection| async {
            let rows = sqlx::query_as(GET_MANY_SQL)
                .bind(&users)
                .bind(&names)
                .fetch_all(&mut *connection)
                .await?;
            Ok::<_, AiError>(rows)
        })?;
        let mut rows_by_slot: Vec<Option<EntryRow>> = unread.iter().map(|_| None).collect();
        for row in rows {
            // `n` counts the batch's keys from 1.
            let slot = usize::try_from(row.n - 1).ok();
            if let Some(place) = slot.and_then(|slot| rows_by_slot.get_mut(slot)) {
                *place = Some(row.entry);
            }
        }
        for ((position, epoch), row) in unread.into_iter().zip(rows_by_slot) {
            let (user, key) = keys[position];
            let Some((value, deadline)) = self.accept(user, key, row, asked, true).await? else {
                continue;
            };
            self.keep_locally(user, key, &value, deadline, epoch).await;
            found[position] = Some(value);
        }
        Ok(found)
    }

    async fn set(
        &self,
        user: UserId,
        key: &str,
        value: &serde_json::Value,
        ttl: Ttl,
    ) -> Result<(), AiError> {
        self.store(user, key, value, ttl).await.map(drop)
    }

    async fn delete(&self, user: UserId, key: &str) -> Result<bool, AiError> {
        check_key(key)?;
        let inner = &self.inner;
        let notify = inner.config.cache.notify_invalidations;
        let payload = local::payload_for_entry(inner.instance, user, key);
        let removed: i64 = on_statement_connection!(inner, |connection| async {
            let removed = if notify {
                sqlx::query_scalar(DELETE_AND_NOTIFY_SQL)
                    .bind(user)
                    .bind(key)
                    .bind(local::CHANNEL)
                    .bind(&payload)
                    .fetch_one(&mut *connection)
                    .await?
            } else {
                let result = sqlx::query(DELETE_SQL)
                    .bind(user)
                    .bind(key)
                    .execute(&mut *connection)
                    .await?;
                i64::try_from(result.rows_affected()).unwrap_or(i64::MAX)
            };
            Ok::<_, AiError>(removed)
        })?;
        inner.hits.forget(user, key);
        if let Some(tier) = &inner.local {
            tier.invalidate(user, key).await;
        }
        Ok(removed > 0)
    }

    async fn get_or_compute<'a>(
        &'a self,
        user: UserId,
        key: &'a str,
        ttl: Ttl,
        compute: BoxFuture<'a, Result<serde_json::Value, AiError>>,
    ) -> Result<CachedValue, AiError> {
        if let Some(value) = self.get(user, key).await? {
            return Ok(value);
        }
        let _flight = self.inner.flights.lock((user, key.to_owned())).await;
        // Whoever held the key before us has stored the value (unless it failed).
        if let Some(value) = self.lookup(user, key, false).await? {
            return Ok(value);
        }
        let value = compute.await?;
        self.store(user, key, &value, ttl).await
    }

    async fn cleanup_expired(&self) -> Result<u64, AiError> {
        let inner = &self.inner;
        let batch = inner.config.cache.cleanup_batch.max(1);
        let mut removed_total = 0_u64;
        loop {
            let removed: i64 = with_retry(&inner.config.retry, || async {
                let mut unit = inner.db.unit(inner.db.primary()).await?;
                let removed: i64 = sqlx::query_scalar("SELECT ai.cleanup_expired_cache($1)")
                    .bind(i32::try_from(batch).unwrap_or(i32::MAX))
                    .fetch_one(&mut *unit)
                    .await?;
                unit.finish().await?;
                Ok::<_, AiError>(removed)
            })
            .await?;
            let removed = u64::try_from(removed).unwrap_or(0);
            removed_total += removed;
            metrics::counter!("ai_cache_cleaned_total").increment(removed);
            if removed < u64::from(batch) {
                return Ok(removed_total);
            }
        }
    }

    fn stats(&self) -> CacheStats {
        let counters = &self.inner.counters;
        CacheStats {
            local_hits: counters.local_hits.load(Ordering::Relaxed),
            database_hits: counters.database_hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            expired: counters.expired.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod lifetimes {
    use std::time::Duration;

    use super::{MAX_TTL, Ttl};

    #[test]
    fn a_lifetime_in_seconds_is_bounded_and_consistent() {
        let day = Duration::from_secs(86_400);
        assert_eq!(Ttl::from_seconds(None, false, false).unwrap(), Ttl::Default);
        assert_eq!(Ttl::from_seconds(None, false, true).unwrap(), Ttl::Never);
        assert_eq!(
            Ttl::from_seconds(Some(86_400), true, false).unwrap(),
            Ttl::Sliding(day)
        );
        let longest = Ttl::from_seconds(Some(MAX_TTL.as_secs()), false, false).unwrap();
        assert_eq!(longest, Ttl::Absolute(MAX_TTL));
        for (seconds, sliding, forever) in [
            (Some(0), false, false),
            (Some(MAX_TTL.as_secs() + 1), false, false),
            (None, true, false),
            (Some(60), false, true),
        ] {
            assert!(
                Ttl::from_seconds(seconds, sliding, forever).is_err(),
                "{seconds:?} {sliding} {forever}"
            );
        }
    }
}

#[cfg(test)]
mod plans {
    use db_core::migrate::core_set;
    use db_core::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
    use db_core::testing::TestDb;

    /// Prepared statements run a generic plan after five executions: the batch read's must
    /// look keys up by the primary key, not scan the table, once the table holds more than a
    /// handful of entries.
    #[tokio::test]
    async fn the_batch_read_looks_keys_up_by_index_in_its_generic_plan() {
        let db = TestDb::new(vec![core_set(), crate::migration_set()]).await;
        let mut connection = PgConnection::connect_with(&db.connect_options())
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO public.users (email)
                 SELECT 'plan-' || n || '@example.com' FROM generate_series(1, 2000) n;
             INSERT INTO ai.cache_entries (user_id, cache_key, value)
                 SELECT id, 'k', '{}'::jsonb FROM public.users;
             ANALYZE ai.cache_entries;
             SET plan_cache_mode = force_generic_plan;",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "PREPARE batch(uuid[], text[]) AS {}",
            super::GET_MANY_SQL
        )))
        .execute(&mut connection)
        .await
        .unwrap();
        let plan: Vec<String> =
            sqlx::query_scalar("EXPLAIN EXECUTE batch(ARRAY[gen_random_uuid()], ARRAY['k'])")
                .fetch_all(&mut connection)
                .await
                .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan") && !plan.contains("Seq Scan"),
            "{plan}"
        );
    }
}
