//! Settings of the AI store. Defaults suit one api-server; a binary embeds [`AiConfig`] in its
//! own configuration (it deserialises, every field optional) and calls
//! [`AiConfig::validate`] before starting the store.

use std::time::Duration;

use db_core::RetryPolicy;
use db_core::settings::{InvalidSetting, at_least_one, positive_duration};
use serde::{Deserialize, Serialize};

/// Everything the store can be tuned with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AiConfig {
    pub cache: CacheConfig,
    pub retention: RetentionConfig,
    /// Retries of serialisation failures and lost connections.
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Lifetime of an entry set with [`crate::Ttl::Default`].
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Entries of the optional in-process tier; 0 turns it off. Entries with a sliding TTL are
    /// never held there (each hit must reach the database to extend them).
    pub local_entries: u64,
    /// How often hit counts gathered in memory are written to the entries. Each write updates
    /// every entry hit since the last: a longer interval merges more hits of one entry into
    /// one row update, at the price of counts that lag by as much (what each interval costs
    /// is measured in docs/benchmarks.md). [`crate::PgResponseCache::flush_hits`] writes them
    /// at once (at shutdown).
    #[serde(with = "humantime_serde")]
    pub hit_flush_interval: Duration,
    /// Rows one cleanup statement removes at most: each batch holds its locks briefly.
    pub cleanup_batch: u32,
    /// Send an invalidation (`NOTIFY`) on every set and delete, so processes with an
    /// in-process tier drop their copy. Must be on in every process that writes the cache
    /// whenever any process runs the tier.
    pub notify_invalidations: bool,
    /// Connections for cache reads and writes, each a statement of its own (see
    /// [`db_core::DirectPool`]: no ping per call).
    pub connections: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            local_entries: 0,
            hit_flush_interval: Duration::from_secs(10),
            cleanup_batch: 10_000,
            notify_invalidations: true,
            connections: 8,
        }
    }
}

/// What [`crate::PgAiStore::run_maintenance`] removes, and how much per run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Messages older than this are removed; `None` keeps them.
    #[serde(with = "humantime_serde")]
    pub messages: Option<Duration>,
    /// Soft-deleted conversations are purged (with their messages) this long after deletion.
    #[serde(with = "humantime_serde")]
    pub deleted_conversations: Duration,
    /// Learning examples older than this are removed; `None` keeps them.
    #[serde(with = "humantime_serde")]
    pub learning_data: Option<Duration>,
    /// Most rows one run removes from each table: a run stays short, the next one continues.
    pub max_rows_per_run: u32,
    /// Rows one delete statement removes at most.
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            messages: None,
            deleted_conversations: Duration::from_secs(30 * 24 * 3600),
            learning_data: None,
            max_rows_per_run: 100_000,
            batch: 5_000,
        }
    }
}

impl AiConfig {
    /// Refuses what would break the store later: zero durations (a busy loop, or a retention
    /// that deletes everything), zero connections or batch sizes.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let (cache, retention) = (&self.cache, &self.retention);
        positive_duration("cache.default_ttl", cache.default_ttl)?;
        positive_duration("cache.hit_flush_interval", cache.hit_flush_interval)?;
        at_least_one("cache.cleanup_batch", u64::from(cache.cleanup_batch))?;
        at_least_one("cache.connections", cache.connections as u64)?;
        let retentions = [
            ("retention.messages", retention.messages),
            (
                "retention.deleted_conversations",
                Some(retention.deleted_conversations),
            ),
            ("retention.learning_data", retention.learning_data),
        ];
        for (key, age) in retentions {
            age.map_or(Ok(()), |age| positive_duration(key, age))?;
        }
        at_least_one(
            "retention.max_rows_per_run",
            u64::from(retention.max_rows_per_run),
        )?;
        at_least_one("retention.batch", u64::from(retention.batch))?;
        self.retry.validate().map_err(|error| error.within("retry"))
    }
}
