//! A store on a fresh database, with helpers to make users.

use ai_store::{AiConfig, PgAiStore, UserId};
use db_core::migrate::core_set;
use db_core::testing::TestDb;
use db_core::{Db, DbConfig};

pub struct Fixture {
    pub db: TestDb,
    pub store: PgAiStore,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_config(AiConfig::default()).await
    }

    pub async fn with_config(config: AiConfig) -> Self {
        let db = TestDb::new(vec![core_set(), ai_store::migration_set()]).await;
        let store = PgAiStore::start(db.db(), config).await.unwrap();
        Self { db, store }
    }

    /// Another store on the same database with pools of its own, as another process would
    /// have.
    pub async fn other_process(&self, config: AiConfig) -> PgAiStore {
        let db = Db::connect_with(&DbConfig::default(), self.db.connect_options())
            .await
            .unwrap();
        PgAiStore::start(db, config).await.unwrap()
    }

    /// A new user of the core backend.
    pub async fn user(&self) -> UserId {
        self.db.user().await
    }
}

pub use test_support::eventually;

/// A lookup's value as JSON (`None` on a miss).
pub fn value_of(hit: Option<ai_store::CachedValue>) -> Option<serde_json::Value> {
    hit.map(|hit| hit.parse().expect("a cached value is JSON"))
}
