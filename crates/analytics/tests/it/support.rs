//! A migrated database per test, and helpers to count what reached it.

use analytics::{PartitionConfig, PgAnalytics, Recorder, RecorderConfig};
use db_core::sqlx;
use db_core::testing::TestDb;

pub struct Fixture {
    pub db: TestDb,
    pub analytics: PgAnalytics,
}

impl Fixture {
    pub async fn new() -> Self {
        let db = TestDb::new(vec![analytics::migration_set()]).await;
        let analytics = PgAnalytics::new(db.db(), PartitionConfig::default());
        Self { db, analytics }
    }

    pub fn recorder(&self, config: RecorderConfig) -> Recorder {
        Recorder::start(&self.db.db(), config)
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}
