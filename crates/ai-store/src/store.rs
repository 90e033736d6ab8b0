//! [`PgAiStore`]: the PostgreSQL implementation of every concern, and what spans them all
//! (forgetting a user, maintenance).

use std::time::Duration;

use db_core::Db;
use serde::Serialize;
use sqlx::PgConnection;

use crate::cache::{INVALIDATION_CHANNEL, PgResponseCache, ResponseCache};
use crate::config::AiConfig;
use crate::error::AiError;
use crate::ids::UserId;

/// The AI assistant's storage on PostgreSQL. Implements [`crate::Conversations`],
/// [`crate::Memory`] and [`crate::LearningLog`]; its response cache is [`PgAiStore::cache`].
#[derive(Clone)]
pub struct PgAiStore {
    pub(crate) db: Db,
    pub(crate) config: AiConfig,
    cache: PgResponseCache,
}

/// What [`PersonalData::forget_user`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForgetReport {
    pub cache_entries: u64,
    pub conversations: u64,
    pub messages: u64,
    pub facts: u64,
    pub fact_versions: u64,
    pub examples: u64,
}

/// What one [`PgAiStore::run_maintenance`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    pub expired_cache_entries: u64,
    pub expired_facts: u64,
    /// Messages older than the retention period.
    pub old_messages: u64,
    /// Conversations deleted longer ago than the grace period, removed with their messages.
    pub purged_conversations: u64,
    /// Learning examples older than the retention period.
    pub old_examples: u64,
}

/// Everything the store holds about one user, as a whole (the right to be forgotten).
#[async_trait::async_trait]
pub trait PersonalData: Send + Sync {
    /// Removes every row of `user` from schema `ai` (cache entries, conversations and their
    /// messages, facts and their history, learning examples) in one transaction, and drops
    /// every in-process copy of the user's cache entries, here and in other processes.
    async fn forget_user(&self, user: UserId) -> Result<ForgetReport, AiError>;
}

#[async_trait::async_trait]
impl PersonalData for PgAiStore {
    async fn forget_user(&self, user: UserId) -> Result<ForgetReport, AiError> {
        let invalidation = self.cache.user_invalidation(user);
        let invalidation = invalidation.as_deref();
        let report = in_transaction!(self, |connection| forget_on(connection, user, invalidation))?;
        self.cache.forget_user_locally(user).await;
        Ok(report)
    }
}

impl PgAiStore {
    /// Starts the store (and its response cache, see [`PgResponseCache::start`]).
    pub async fn start(db: Db, config: AiConfig) -> Result<Self, AiError> {
        let cache = PgResponseCache::start(db.clone(), config.clone()).await?;
        Ok(Self { db, config, cache })
    }

    /// The response cache.
    pub fn cache(&self) -> &PgResponseCache {
        &self.cache
    }

    /// Stops the store's background work, writing what it holds in memory: see
    /// [`PgResponseCache::shutdown`]. Returns the hit counts written.
    pub async fn shutdown(&self) -> Result<u64, AiError> {
        self.cache.shutdown().await
    }

    /// Removes what has expired or outlived its retention (see
    /// [`RetentionConfig`](crate::RetentionConfig)), at most `max_rows_per_run` rows of each
    /// kind, in batches that each hold their locks briefly; rows locked by others are left
    /// for the next run. Safe to run anywhere, any number of times, concurrently.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, AiError> {
        let retention = &self.config.retention;
        let mut report = MaintenanceReport {
            expired_cache_entries: self.cache.cleanup_expired().await?,
            ..MaintenanceReport::default()
        };
        report.expired_facts = self
            .remove_in_batches(
                "WITH doomed AS (
                     SELECT id FROM ai.memory_facts WHERE expires_at <= now()
                      ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
                 )
                 DELETE FROM ai.memory_facts f USING doomed WHERE f.id = doomed.id",
                None,
            )
            .await?;
        if let Some(age) = retention.messages {
            report.old_messages = self
                .remove_in_batches(
                    "WITH doomed AS (
                         SELECT conversation_id, seq FROM ai.conversation_messages
                          WHERE created_at < now() - $2 * interval '1 millisecond'
                          ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
                     )
                     DELETE FROM ai.conversation_messages m USING doomed
                      WHERE m.conversation_id = doomed.conversation_id AND m.seq = doomed.seq",
                    Some(age),
                )
                .await?;
        }
        report.purged_conversations = self
            .remove_in_batches(
                "WITH doomed AS (
                     SELECT id FROM ai.conversations
                      WHERE deleted_at < now() - $2 * interval '1 millisecond'
                      ORDER BY deleted_at LIMIT $1 FOR UPDATE SKIP LOCKED
                 )
                 DELETE FROM ai.conversations c USING doomed WHERE c.id = doomed.id",
                Some(retention.deleted_conversations),
            )
            .await?;
        if let Some(age) = retention.learning_data {
            report.old_examples = self
                .remove_in_batches(
                    "WITH doomed AS (
                         SELECT id FROM ai.learning_data
                          WHERE created_at < now() - $2 * interval '1 millisecond'
                          ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
                     )
                     DELETE FROM ai.learning_data l USING doomed WHERE l.id = doomed.id",
                    Some(age),
                )
                .await?;
        }
        // The planner's estimate: exact enough for a dashboard, and no scan of a large cache.
        // A table never analysed (-1) is small: counted.
        let mut unit = self.db.unit(self.db.primary()).await?;
        let entries: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
                         ELSE (SELECT count(*) FROM ai.cache_entries) END
               FROM pg_class c WHERE c.oid = 'ai.cache_entries'::regclass",
        )
        .fetch_one(&mut *unit)
        .await?;
        unit.finish().await?;
        metrics::gauge!("ai_cache_entries").set(entries as f64);
        Ok(report)
    }

    /// Runs `delete` (`$1`: batch size, `$2`: age in milliseconds) until it removes less than
    /// a batch or the run's bound is reached; returns the rows removed.
    async fn remove_in_batches(
        &self,
        delete: &'static str,
        age: Option<Duration>,
    ) -> Result<u64, AiError> {
        let retention = &self.config.retention;
        let batch = i64::from(retention.batch.max(1));
        let age_ms = age.map(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        let mut removed_total = 0_u64;
        while removed_total < u64::from(retention.max_rows_per_run) {
            let room = i64::try_from(u64::from(retention.max_rows_per_run) - removed_total)
                .unwrap_or(batch);
            let limit = batch.min(room);
            let removed = on_connection!(self, |connection| async {
                Ok(sqlx::query(delete)
                    .bind(limit)
                    .bind(age_ms)
                    .execute(connection)
                    .await?
                    .rows_affected())
            })?;
            removed_total += removed;
            if i64::try_from(removed).unwrap_or(i64::MAX) < limit {
                break;
            }
        }
        Ok(removed_total)
    }
}

/// Deletes every row of `user` on `connection`, which is in a transaction; sends
/// `invalidation` on the cache's channel when it commits.
async fn forget_on(
    connection: &mut PgConnection,
    user: UserId,
    invalidation: Option<&str>,
) -> Result<ForgetReport, AiError> {
    async fn delete(
        connection: &mut PgConnection,
        sql: &'static str,
        user: UserId,
    ) -> Result<u64, AiError> {
        Ok(sqlx::query(sql)
            .bind(user)
            .execute(connection)
            .await?
            .rows_affected())
    }
    let report = ForgetReport {
        cache_entries: delete(
            connection,
            "DELETE FROM ai.cache_entries WHERE user_id = $1",
            user,
        )
        .await?,
        messages: delete(
            connection,
            "DELETE FROM ai.conversation_messages WHERE user_id = $1",
            user,
        )
        .await?,
        conversations: delete(
            connection,
            "DELETE FROM ai.conversations WHERE user_id = $1",
            user,
        )
        .await?,
        fact_versions: delete(
            connection,
            "DELETE FROM ai.memory_fact_history h USING ai.memory_facts f
              WHERE h.fact_id = f.id AND f.user_id = $1",
            user,
        )
        .await?,
        facts: delete(
            connection,
            "DELETE FROM ai.memory_facts WHERE user_id = $1",
            user,
        )
        .await?,
        examples: delete(
            connection,
            "DELETE FROM ai.learning_data WHERE user_id = $1",
            user,
        )
        .await?,
    };
    if let Some(payload) = invalidation {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(INVALIDATION_CHANNEL)
            .bind(payload)
            .execute(&mut *connection)
            .await?;
    }
    Ok(report)
}
