//! Forgetting a user leaves nothing of theirs in schema ai, and nothing of anyone else gone.

use ai_store::PersonalData;
use ai_store::{
    Conversations, Feedback, LearningLog, Memory, NewConversation, NewExample, NewMessage,
    Observation, ResponseCache, Role, Ttl, UserId,
};
use db_core::sqlx;
use serde_json::json;

use crate::support::Fixture;

async fn populate(fx: &Fixture, user: UserId) {
    fx.store
        .cache()
        .set(user, "k", &json!(1), Ttl::Default)
        .await
        .unwrap();
    let conversation = fx
        .store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    for _ in 0..3 {
        fx.store
            .append_message(user, conversation.id, NewMessage::new(Role::User, "hi", 1))
            .await
            .unwrap();
    }
    fx.store
        .remember(user, Observation::new("name", "Sam", 0.9))
        .await
        .unwrap();
    fx.store
        .remember(user, Observation::new("name", "Samuel", 0.9))
        .await
        .unwrap();
    fx.store
        .record_example(
            user,
            NewExample {
                idempotency_key: "e".into(),
                prompt: "p".into(),
                response: "r".into(),
                feedback: Feedback::Positive,
                metadata: json!({}),
            },
        )
        .await
        .unwrap();
}

/// Rows of `user` in every table of schema ai, found through the catalog so that a table added
/// later is covered too: by its user_id column, or through its fact for the fact history.
async fn rows_of(fx: &Fixture, user: UserId) -> i64 {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.columns
          WHERE table_schema = 'ai' AND column_name = 'user_id'",
    )
    .fetch_all(fx.db.pool())
    .await
    .unwrap();
    assert!(tables.len() >= 5, "{tables:?}");
    let mut rows = 0;
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1"
        )))
        .bind(user)
        .fetch_one(fx.db.pool())
        .await
        .unwrap();
        rows += count;
    }
    let versions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ai.memory_fact_history h
          WHERE NOT EXISTS (SELECT 1 FROM ai.memory_facts f WHERE f.id = h.fact_id)
             OR h.fact_id IN (SELECT id FROM ai.memory_facts WHERE user_id = $1)",
    )
    .bind(user)
    .fetch_one(fx.db.pool())
    .await
    .unwrap();
    rows + versions
}

#[tokio::test]
async fn forget_user_leaves_nothing_of_theirs_and_everything_of_others() {
    let fx = Fixture::new().await;
    let (leaving, staying) = (fx.user().await, fx.user().await);
    populate(&fx, leaving).await;
    populate(&fx, staying).await;
    let before = rows_of(&fx, staying).await;

    let report = fx.store.forget_user(leaving).await.unwrap();
    assert_eq!(
        (report.cache_entries, report.conversations, report.messages),
        (1, 1, 3)
    );
    assert_eq!(
        (report.facts, report.fact_versions, report.examples),
        (1, 2, 1)
    );
    assert_eq!(rows_of(&fx, leaving).await, 0);
    assert_eq!(rows_of(&fx, staying).await, before);
    assert_eq!(fx.store.cache().get(leaving, "k").await.unwrap(), None);

    // Forgetting again finds nothing and fails nothing.
    let again = fx.store.forget_user(leaving).await.unwrap();
    assert_eq!(again, ai_store::ForgetReport::default());
}
