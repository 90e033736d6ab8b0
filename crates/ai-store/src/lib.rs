//! The AI assistant's storage in PostgreSQL schema `ai`: a response cache, conversations,
//! memory facts and learning examples, every row belonging to one user.
//!
//! Each concern is a trait ([`ResponseCache`], [`Conversations`], [`Memory`], [`LearningLog`])
//! implemented on PostgreSQL by [`PgAiStore`] (and [`PgResponseCache`], its cache), so that a
//! service can hold `Arc<dyn Memory>` and tests can reach every behaviour through the same
//! API. Every method takes the user and every statement is scoped to it: no read crosses
//! users. [`PersonalData::forget_user`] removes a user's rows from the whole schema at once;
//! [`PgAiStore::run_maintenance`] removes what has expired or outlived its retention.
//!
//! This crate owns schema `ai` and ships its migrations ([`migration_set`]); it depends on
//! `db-core` only, never on HTTP or on another domain crate. Start reading at [`store`] and
//! [`cache`].

/// Runs `$body` (an async block using the connection `$connection`) on a pooled connection
/// as one [`db_core::Unit`], retrying when that may succeed.
///
/// A macro rather than a function taking an async closure: the futures of `#[async_trait]`
/// methods must be `Send`, which the compiler cannot yet prove through a closure that borrows
/// its argument for any lifetime.
macro_rules! on_connection {
    ($store:expr, |$connection:ident| $body:expr) => {
        db_core::with_retry(&$store.config.retry, || async {
            let mut unit = $store.db.unit($store.db.primary()).await?;
            let $connection: &mut sqlx::PgConnection = &mut unit;
            let result: Result<_, $crate::error::AiError> = $body.await;
            let value = result?;
            unit.finish().await?;
            Ok::<_, $crate::error::AiError>(value)
        })
        .await
    };
}

/// Runs `$body` in a transaction of its own, retrying the whole transaction when that may
/// succeed.
macro_rules! in_transaction {
    ($store:expr, |$connection:ident| $body:expr) => {
        db_core::with_retry(&$store.config.retry, || async {
            let mut transaction = $store.db.begin().await?;
            let $connection: &mut sqlx::PgConnection = &mut transaction;
            let value = $body.await?;
            transaction.commit().await?;
            Ok::<_, $crate::error::AiError>(value)
        })
        .await
    };
}

pub mod cache;
mod config;
pub mod conversations;
mod error;
mod ids;
pub mod import;
pub mod learning;
pub mod memory;
pub mod store;
mod validate;

pub use cache::{CacheStats, CachedValue, MAX_TTL, PgResponseCache, ResponseCache, Ttl, check_key};
pub use config::{AiConfig, CacheConfig, RetentionConfig};
pub use conversations::{
    Conversation, Conversations, Message, NewConversation, NewMessage, Role, Window,
};
pub use error::AiError;
pub use ids::{ConversationId, ExampleId, FactId, UserId};
pub use learning::{Example, ExportScope, Feedback, LearningLog, NewExample, Recorded};
pub use memory::{FactSearch, FactVersion, FoundFact, Memory, MemoryFact, Observation};
pub use store::{ForgetReport, MaintenanceReport, PersonalData, PgAiStore};

/// The store's traits, for one `use ai_store::prelude::*;` (their methods need them in scope).
pub mod prelude {
    pub use crate::{Conversations, LearningLog, Memory, PersonalData, ResponseCache};
}

#[allow(unused_imports, clippy::all)]
mod embedded {
    refinery::embed_migrations!("../../migrations/ai");
}

/// The `ai` migration set: schema `ai`, applied after `core` (its tables reference
/// `public.users`).
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::MigrationSet::from_runner("ai", "ai", &embedded::migrations::runner())
        .depends_on(&["core"])
}

/// Describes this crate's metrics to the installed `metrics` recorder (their help texts in
/// Prometheus). Call once, after installing the recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "ai_cache_lookups_total",
        "Response cache lookups, by outcome (hit_local, hit_database, miss, expired)"
    );
    metrics::describe_counter!(
        "ai_cache_cleaned_total",
        "Expired response cache entries removed by cleanup"
    );
    metrics::describe_gauge!(
        "ai_cache_entries",
        "Response cache entries, as the table's statistics estimate them (set by each maintenance run)"
    );
    // Exported from the start at zero, so that a hit ratio exists before the first lookup.
    for outcome in ["hit_local", "hit_database", "miss", "expired"] {
        metrics::counter!("ai_cache_lookups_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("ai_cache_cleaned_total").increment(0);
}

/// `docs/ai-store.md`, whose samples `cargo test -p ai-store --doc` compiles.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ai-store.md")]
pub struct Guide;
