//! Cache reads over HTTP, gathered ([`super::gather`]): concurrent
//! `GET /api/v1/ai/users/{user}/cache/{key}` requests of one worker thread are answered by one
//! [`ResponseCache::get_many`] statement. Answers, hit counts and sliding renewals are those
//! of single reads (`get_many` guarantees it).

use std::sync::Arc;

use ai_store::{CachedValue, ResponseCache, UserId};

use crate::api::gather::Gatherer;
use crate::error::ApiError;

/// Batches of one worker at the database at once. Two: while one is out, the next gathers
/// and can go as soon as a connection and a core are free.
const BATCHES_OUT: usize = 2;
/// Keys one statement reads at most.
const MAX_BATCH: usize = 128;

type Answer = Result<Option<CachedValue>, ApiError>;

/// One worker thread's cache reads.
pub struct CacheReads {
    gatherer: Gatherer<(UserId, String), Answer>,
}

impl CacheReads {
    pub fn new(cache: Arc<dyn ResponseCache>) -> Self {
        let run = move |keys: Vec<(UserId, String)>| {
            let cache = cache.clone();
            Box::pin(async move {
                let asked: Vec<(UserId, &str)> = keys
                    .iter()
                    .map(|(user, key)| (*user, key.as_str()))
                    .collect();
                match cache.get_many(&asked).await {
                    Ok(found) => found.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(ApiError::from(error)); keys.len()],
                }
            }) as futures_util::future::LocalBoxFuture<'static, Vec<Answer>>
        };
        Self {
            gatherer: Gatherer::new("cache_reads", MAX_BATCH, BATCHES_OUT, Box::new(run)),
        }
    }

    /// The live value of `key`, read with whatever other reads are queued on this worker.
    pub async fn get(&self, user: UserId, key: String) -> Answer {
        // Checked here: one bad key would fail its whole batch.
        ai_store::check_key(&key)?;
        self.gatherer
            .submit((user, key))
            .await
            .unwrap_or_else(|| Err(ApiError::shutting_down()))
    }
}
