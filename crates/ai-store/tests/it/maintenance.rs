//! Maintenance removes exactly what expired or outlived its retention, at most a bounded
//! amount per run, and a second run finds nothing left.

use std::time::Duration;

use ai_store::{
    AiConfig, CacheConfig, Conversations, Feedback, LearningLog, MaintenanceReport, Memory,
    NewConversation, NewExample, NewMessage, Observation, ResponseCache, RetentionConfig, Role,
    Ttl,
};
use chrono::Utc;
use db_core::sqlx;
use serde_json::json;

use crate::support::Fixture;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn config(max_rows_per_run: u32) -> AiConfig {
    AiConfig {
        cache: CacheConfig {
            cleanup_batch: 4,
            ..CacheConfig::default()
        },
        retention: RetentionConfig {
            messages: Some(30 * DAY),
            deleted_conversations: 7 * DAY,
            learning_data: Some(90 * DAY),
            max_rows_per_run,
            batch: 3,
        },
        ..AiConfig::default()
    }
}

async fn age(fx: &Fixture, sql: &'static str) {
    sqlx::query(sql).execute(fx.db.pool()).await.unwrap();
}

#[tokio::test]
async fn maintenance_removes_what_is_due_boundedly_and_idempotently() {
    let fx = Fixture::with_config(config(1_000)).await;
    let user = fx.user().await;
    let store = &fx.store;
    for i in 0..10 {
        let ttl = if i < 6 {
            Ttl::Absolute(Duration::from_millis(1))
        } else {
            Ttl::Never
        };
        store
            .cache()
            .set(user, &format!("k{i}"), &json!(i), ttl)
            .await
            .unwrap();
    }
    for i in 0..5 {
        let expires_at = (i < 2).then(|| Utc::now() - chrono::Duration::seconds(1));
        store
            .remember(
                user,
                Observation {
                    expires_at,
                    ..Observation::new(format!("f{i}"), "x", 0.5)
                },
            )
            .await
            .unwrap();
    }
    let kept = store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    for _ in 0..8 {
        store
            .append_message(user, kept.id, NewMessage::new(Role::User, "m", 1))
            .await
            .unwrap();
    }
    // Five of the eight messages are old.
    age(&fx, "UPDATE ai.conversation_messages SET created_at = now() - interval '31 days' WHERE seq <= 5").await;
    let deleted_long_ago = store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    let deleted_lately = store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    store
        .delete_conversation(user, deleted_long_ago.id)
        .await
        .unwrap();
    store
        .delete_conversation(user, deleted_lately.id)
        .await
        .unwrap();
    sqlx::query("UPDATE ai.conversations SET deleted_at = now() - interval '8 days' WHERE id = $1")
        .bind(deleted_long_ago.id)
        .execute(fx.db.pool())
        .await
        .unwrap();
    for i in 0..4 {
        store
            .record_example(
                user,
                NewExample {
                    idempotency_key: format!("e{i}"),
                    prompt: "p".into(),
                    response: "r".into(),
                    feedback: Feedback::Neutral,
                    metadata: json!({}),
                },
            )
            .await
            .unwrap();
    }
    age(&fx, "UPDATE ai.learning_data SET created_at = now() - interval '91 days' WHERE idempotency_key IN ('e0', 'e1', 'e2')").await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    let report = store.run_maintenance().await.unwrap();
    assert_eq!(
        report,
        MaintenanceReport {
            expired_cache_entries: 6,
            expired_facts: 2,
            old_messages: 5,
            purged_conversations: 1,
            old_examples: 3,
        }
    );
    assert_eq!(
        store.run_maintenance().await.unwrap(),
        MaintenanceReport::default()
    );
    assert_eq!(
        store.messages(user, kept.id, 0, 100).await.unwrap().len(),
        3
    );
    assert_eq!(store.facts(user, None, 100).await.unwrap().len(), 3);
    let conversations: i64 = sqlx::query_scalar("SELECT count(*) FROM ai.conversations")
        .fetch_one(fx.db.pool())
        .await
        .unwrap();
    assert_eq!(
        conversations, 2,
        "the lately deleted one waits for its grace period"
    );
}

#[tokio::test]
async fn one_run_removes_at_most_its_bound_and_the_next_continues() {
    let fx = Fixture::with_config(config(5)).await;
    let user = fx.user().await;
    let conversation = fx
        .store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    for _ in 0..12 {
        fx.store
            .append_message(user, conversation.id, NewMessage::new(Role::User, "m", 1))
            .await
            .unwrap();
    }
    age(
        &fx,
        "UPDATE ai.conversation_messages SET created_at = now() - interval '31 days'",
    )
    .await;
    let removed: Vec<u64> = {
        let mut removed = Vec::new();
        for _ in 0..4 {
            removed.push(fx.store.run_maintenance().await.unwrap().old_messages);
        }
        removed
    };
    assert_eq!(removed, [5, 5, 2, 0]);
}
