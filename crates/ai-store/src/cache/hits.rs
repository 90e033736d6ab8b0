//! Hit counts gathered in memory and written in batches: a hit costs no write.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use db_core::Db;

use crate::error::AiError;
use crate::ids::UserId;

#[derive(Debug, Clone, Copy)]
struct Pending {
    hits: i64,
    last_hit: DateTime<Utc>,
}

/// Hits not yet written, by entry.
#[derive(Default)]
pub(crate) struct HitCounter {
    pending: Mutex<HashMap<(UserId, String), Pending>>,
}

impl HitCounter {
    pub(crate) fn record(&self, user: UserId, key: &str) {
        let now = Utc::now();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(&(user, key.to_owned())) {
            Some(entry) => {
                entry.hits += 1;
                entry.last_hit = now;
            }
            None => {
                pending.insert(
                    (user, key.to_owned()),
                    Pending {
                        hits: 1,
                        last_hit: now,
                    },
                );
            }
        }
    }

    /// Hits of the entry not yet written.
    pub(crate) fn unwritten(&self, user: UserId, key: &str) -> i64 {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(user, key.to_owned()))
            .map_or(0, |entry| entry.hits)
    }

    /// Forgets the hits of an entry that was replaced or removed: they counted the old value.
    pub(crate) fn forget(&self, user: UserId, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(user, key.to_owned()));
    }

    pub(crate) fn forget_user(&self, user: UserId) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(owner, _), _| *owner != user);
    }

    /// Adds the gathered hits to the entries, in one statement; returns how many entries it
    /// updated. Entries removed meanwhile are skipped. If the write fails, the hits are kept
    /// for the next flush.
    pub(crate) async fn flush(&self, db: &Db) -> Result<u64, AiError> {
        let mut batch: Vec<((UserId, String), Pending)> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        // In key order, so concurrent flushers (other processes) tend to lock rows in the same
        // order; a deadlock all the same only delays these hits to the next flush.
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let users: Vec<UserId> = batch.iter().map(|((user, _), _)| *user).collect();
        let keys: Vec<&str> = batch.iter().map(|((_, key), _)| key.as_str()).collect();
        let hits: Vec<i64> = batch.iter().map(|(_, pending)| pending.hits).collect();
        let last_hits: Vec<DateTime<Utc>> =
            batch.iter().map(|(_, pending)| pending.last_hit).collect();
        let written = async {
            let mut unit = db.unit(db.primary()).await?;
            let result = sqlx::query(
                "UPDATE ai.cache_entries e
                SET hit_count = e.hit_count + h.hits,
                    last_hit_at = greatest(e.last_hit_at, h.last_hit)
               FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[])
                        AS h(user_id, cache_key, hits, last_hit)
              WHERE e.user_id = h.user_id AND e.cache_key = h.cache_key",
            )
            .bind(&users)
            .bind(&keys)
            .bind(&hits)
            .bind(&last_hits)
            .execute(&mut *unit)
            .await?;
            unit.finish().await?;
            Ok::<_, AiError>(result.rows_affected())
        }
        .await;
        match written {
            Ok(written) => Ok(written),
            Err(error) => {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                for (entry, unwritten) in batch {
                    let merged = pending.entry(entry).or_insert(Pending {
                        hits: 0,
                        ..unwritten
                    });
                    merged.hits += unwritten.hits;
                    merged.last_hit = merged.last_hit.max(unwritten.last_hit);
                }
                Err(error)
            }
        }
    }
}
