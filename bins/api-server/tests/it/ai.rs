//! The AI store over HTTP: cache, conversations, facts, examples and their export, and
//! forgetting a user; nothing crosses users.

use db_core::testing::TestDb;
use serde_json::json;

use crate::ledger::Api;
use crate::{spawn, with_database};

const ADMIN: &str = "admin-token-0123456789";

#[tokio::test]
async fn the_ai_store_over_http() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.auth.admin_tokens = vec![ADMIN.into()];
    let (base, handle, running) = spawn(settings).await;
    let api = Api {
        base,
        client: reqwest::Client::new(),
        token: Some(ADMIN.into()),
    };
    let (alice, bob) = (
        api.user("ai-alice@example.com").await,
        api.user("ai-bob@example.com").await,
    );
    let user = |id: &str| format!("/api/v1/ai/users/{id}");

    // Cache: put, get, isolation, delete.
    let put = api
        .client
        .put(format!("{}{}/cache/menu", api.base, user(&alice)))
        .bearer_auth(ADMIN)
        .json(&json!({ "value": { "dishes": ["soup"] }, "ttl_seconds": 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let (status, cached) = api.get(&format!("{}/cache/menu", user(&alice))).await;
    assert_eq!(
        (status, &cached["value"]),
        (200, &json!({ "dishes": ["soup"] }))
    );
    let (status, miss) = api.get(&format!("{}/cache/menu", user(&bob))).await;
    assert_eq!(
        (status, miss["type"].as_str()),
        (404, Some("/problems/cache-miss"))
    );
    let deleted = api
        .client
        .delete(format!("{}{}/cache/menu", api.base, user(&alice)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    // Conversations and messages.
    let (status, conversation) = api
        .post(
            &format!("{}/conversations", user(&alice)),
            json!({ "title": "Dinner" }),
        )
        .await;
    assert_eq!(status, 201, "{conversation}");
    let conversation = format!(
        "{}/conversations/{}",
        user(&alice),
        conversation["id"].as_str().unwrap()
    );
    for (n, role) in ["user", "assistant", "user"].iter().enumerate() {
        let (status, message) = api
            .post(
                &format!("{conversation}/messages"),
                json!({ "role": role, "content": format!("m{n}"), "token_count": 10 }),
            )
            .await;
        assert_eq!((status, message["seq"].as_i64()), (201, Some(n as i64 + 1)));
    }
    let (_, page) = api
        .get(&format!("{conversation}/messages?after_seq=1&limit=1"))
        .await;
    assert_eq!(
        (
            page["messages"][0]["content"].as_str(),
            page["next_after_seq"].as_i64()
        ),
        (Some("m1"), Some(2))
    );
    let (_, window) = api.get(&format!("{conversation}/window?last=2")).await;
    assert_eq!(window.as_array().unwrap().len(), 2);
    let (status, problem) = api
        .get(&format!("{conversation}/window?last=2&tokens=5"))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/invalid-query"))
    );
    let stolen = conversation.replace(&alice, &bob);
    let (status, problem) = api.get(&stolen).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/conversation-not-found"))
    );
    let (status, problem) = api
        .post(
            &format!("{conversation}/messages"),
            json!({ "role": "narrator", "content": "x" }),
        )
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/invalid-field"))
    );

    // Facts: observed twice, searched.
    for confidence in [0.5, 0.5] {
        let response = api
            .client
            .put(format!("{}{}/facts/diet", api.base, user(&alice)))
            .bearer_auth(ADMIN)
            .json(&json!({ "content": "vegetarian, loves lentil soup", "category": "diet", "confidence": confidence }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let (_, fact) = api.get(&format!("{}/facts/diet", user(&alice))).await;
    assert_eq!(fact["fact"]["observation_count"], 2);
    assert_eq!(fact["history"].as_array().unwrap().len(), 2);
    let (status, found) = api
        .get(&format!("{}/facts/search?q=lentil", user(&alice)))
        .await;
    assert_eq!((status, found.as_array().unwrap().len()), (200, 1));
    let (_, none) = api
        .get(&format!("{}/facts/search?q=lentil", user(&bob)))
        .await;
    assert!(none.as_array().unwrap().is_empty());
    let bad = api
        .client
        .put(format!("{}{}/facts/diet", api.base, user(&alice)))
        .bearer_auth(ADMIN)
        .json(&json!({ "content": "x", "confidence": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    // Examples: recorded once, exported as NDJSON.
    let example = json!({ "idempotency_key": "e1", "prompt": "p", "response": "r", "feedback": { "kind": "positive" } });
    let (status, _) = api
        .post(&format!("{}/examples", user(&alice)), example.clone())
        .await;
    assert_eq!(status, 201);
    let (status, replay) = api
        .post(&format!("{}/examples", user(&alice)), example)
        .await;
    assert_eq!((status, replay["created"].as_bool()), (200, Some(false)));
    let export = api
        .client
        .get(format!(
            "{}/api/v1/ai/examples/export?user={alice}",
            api.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let text = export.text().await.unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");

    // Forgetting the user removes everything of theirs.
    let forgotten = api
        .client
        .delete(format!("{}{}", api.base, user(&alice)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(forgotten.status(), 200);
    let report: serde_json::Value = forgotten.json().await.unwrap();
    assert_eq!(
        (
            report["conversations"].as_u64(),
            report["messages"].as_u64(),
            report["facts"].as_u64()
        ),
        (Some(1), Some(3), Some(1))
    );
    let (status, _) = api.get(&conversation).await;
    assert_eq!(status, 404);

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
