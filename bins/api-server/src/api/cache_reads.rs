//! Cache reads over HTTP, gathered ([`super::gather`]): concurrent
//! `GET /api/v1/ai/users/{user}/cache/{key}` requests of one worker thread are answered by one
//! [`ResponseCache::get_many`] statement. Answers, hit counts and sliding renewals are those
//! of single reads (`get_many` guarantees it).

use admin_api::Problem;
use ai_store::{CachedValue, ResponseCache, UserId};

use crate::api::ai::{SharedAi, ai_problem};
use crate::api::gather::{Gatherer, stopping};

/// Batches of one worker at the database at once. Two: while one is out, the next gathers
/// and can go as soon as a connection and a core are free.
const BATCHES_OUT: usize = 2;
/// Keys one statement reads at most.
const MAX_BATCH: usize = 128;

type Answer = Result<Option<CachedValue>, Problem>;

/// One worker thread's cache reads.
pub struct CacheReads {
    gatherer: Gatherer<(UserId, String), Answer>,
}

impl CacheReads {
    pub fn new(ai: SharedAi) -> Self {
        let run = move |keys: Vec<(UserId, String)>| {
            let ai = ai.clone();
            Box::pin(async move {
                let asked: Vec<(UserId, &str)> = keys
                    .iter()
                    .map(|(user, key)| (*user, key.as_str()))
                    .collect();
                match ai.cache().get_many(&asked).await {
                    Ok(found) => found.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(ai_problem(&error)); keys.len()],
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
        ai_store::check_key(&key).map_err(|error| ai_problem(&error))?;
        self.gatherer
            .submit((user, key))
            .await
            .unwrap_or_else(|| Err(stopping()))
    }
}
