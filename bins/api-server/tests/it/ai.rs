//! The AI store over HTTP: cache, conversations, facts, examples and their export, and
//! forgetting a user; nothing crosses users.

use std::time::{Duration, Instant};

use db_core::sqlx;
use db_core::testing::TestDb;
use serde_json::{Value, json};

use crate::ledger::Api;
use crate::{documented_fields, fields, spawn, with_database};

const ADMIN: &str = "admin-token-0123456789";

#[tokio::test]
async fn the_ai_store_over_http() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.auth.tokens = vec![crate::service("ops", ADMIN, &access::Scope::ALL)];
    let (base, handle, running) = spawn(settings).await;
    let api = Api::new(&base).with_token(ADMIN);
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
    // The document describes the answers field for field (checked below as they come).
    let (_, document) = api.get("/api-docs/openapi.json").await;
    let schema = |name: &str| documented_fields(&document, name);
    assert_eq!(fields(&cached), schema("CacheEntry"));
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
    assert_eq!(fields(&conversation), schema("Conversation"));
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
        assert_eq!(fields(&message), schema("Message"));
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
    assert_eq!(fields(&page), schema("MessagePage"));
    let (_, window) = api.get(&format!("{conversation}/window?last=2")).await;
    assert_eq!(window.as_array().unwrap().len(), 2);
    // Three messages of 10 tokens: a budget of 25 holds the newest two, `last=1` narrows that
    // to one; with neither bound the window is the last 20.
    let seqs = |window: &Value| -> Vec<i64> {
        let messages = window.as_array().unwrap();
        messages
            .iter()
            .map(|message| message["seq"].as_i64().unwrap())
            .collect()
    };
    let (_, window) = api.get(&format!("{conversation}/window?tokens=25")).await;
    assert_eq!(seqs(&window), [2, 3]);
    let (_, window) = api
        .get(&format!("{conversation}/window?last=1&tokens=25"))
        .await;
    assert_eq!(seqs(&window), [3]);
    let (_, window) = api.get(&format!("{conversation}/window")).await;
    assert_eq!(seqs(&window), [1, 2, 3]);
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
    assert_eq!(fields(&fact), schema("FactWithHistory"));
    assert_eq!(fields(&fact["fact"]), schema("Fact"));
    assert_eq!(fields(&fact["history"][0]), schema("FactVersion"));
    let (status, found) = api
        .get(&format!("{}/facts/search?q=lentil", user(&alice)))
        .await;
    assert_eq!((status, found.as_array().unwrap().len()), (200, 1));
    assert_eq!(fields(&found[0]), schema("FoundFact"));
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
    let (status, recorded) = api
        .post(&format!("{}/examples", user(&alice)), example.clone())
        .await;
    assert_eq!(status, 201);
    assert_eq!(fields(&recorded), schema("RecordedExample"));
    assert_eq!(fields(&recorded["example"]), schema("Example"));
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
    assert_eq!(fields(&report), schema("ForgetReport"));
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

/// Concurrent cache reads are gathered into batch statements per worker: every reader must
/// still get exactly its own entry (or its own miss or refusal), and every hit is counted.
#[tokio::test]
async fn concurrent_cache_reads_each_get_their_own_answer() {
    let db = TestDb::new(api_server::all_sets()).await;
    let settings = with_database(&db);
    let (base, handle, running) = spawn(settings).await;
    let api = std::sync::Arc::new(Api::new(&base));
    const USERS: usize = 4;
    const KEYS: usize = 5;
    let mut users = Vec::new();
    for n in 0..USERS {
        let user = api.user(&format!("reads-{n}@example.com")).await;
        for key in 0..KEYS {
            let put = api
                .client
                .put(format!("{}/api/v1/ai/users/{user}/cache/k{key}", api.base))
                .json(&json!({ "value": { "user": user, "key": key }, "forever": true }))
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 204);
        }
        users.push(user);
    }
    let users = std::sync::Arc::new(users);

    // 48 clients, 25 reads each: mostly hits, some misses (k9) and some refused keys.
    let readers: Vec<_> = (0..48_usize)
        .map(|client| {
            let (api, users) = (api.clone(), users.clone());
            tokio::spawn(async move {
                let mut hits = [[0_i64; KEYS]; USERS];
                for read in 0..25_usize {
                    let (user, key) = ((client + read) % USERS, (client * 7 + read) % (KEYS + 2));
                    let name = match key {
                        k if k < KEYS => format!("k{k}"),
                        k if k == KEYS => "k9".to_owned(),
                        _ => "x".repeat(600),
                    };
                    let (status, body) = api
                        .get(&format!("/api/v1/ai/users/{}/cache/{name}", users[user]))
                        .await;
                    match key {
                        k if k < KEYS => {
                            assert_eq!(status, 200, "{body}");
                            assert_eq!(body["value"], json!({ "user": users[user], "key": k }));
                            hits[user][k] += 1;
                        }
                        k if k == KEYS => {
                            assert_eq!(
                                (status, body["type"].as_str()),
                                (404, Some("/problems/cache-miss"))
                            );
                        }
                        _ => {
                            assert_eq!(
                                (status, body["type"].as_str()),
                                (422, Some("/problems/invalid-field")),
                                "{body}"
                            );
                        }
                    }
                }
                hits
            })
        })
        .collect();
    let mut hits = [[0_i64; KEYS]; USERS];
    for reader in readers {
        for (user, counts) in reader.await.unwrap().into_iter().enumerate() {
            for (key, count) in counts.into_iter().enumerate() {
                hits[user][key] += count;
            }
        }
    }
    // The reads were gathered: some statement answered more than one (the metric is the
    // process's, shared with the other tests).
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (keys, batches) = (
        value("fodi_http_gathered_batch_size_sum{kind=\"cache_reads\"}"),
        value("fodi_http_gathered_batch_size_count{kind=\"cache_reads\"}"),
    );
    assert!(
        batches > 0.0 && keys > batches,
        "never gathered: {keys} reads in {batches} statements"
    );

    // Nothing counted twice or lost: one more read sees every hit plus its own.
    for (user, counts) in hits.iter().enumerate() {
        for (key, count) in counts.iter().enumerate() {
            let (status, body) = api
                .get(&format!("/api/v1/ai/users/{}/cache/k{key}", users[user]))
                .await;
            assert_eq!(status, 200);
            assert_eq!(body["hit_count"], json!(count + 1), "user {user} key {key}");
        }
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// `ai.retention.messages` reaches the store: the maintenance job removes older messages.
#[tokio::test]
async fn messages_past_the_configured_retention_are_removed() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.ai.retention.messages = Some(Duration::from_secs(24 * 3600));
    settings.jobs.ai_maintenance = Duration::from_millis(100);
    let (base, handle, running) = spawn(settings).await;
    let api = Api::new(&base);
    let carol = api.user("ai-retention@example.com").await;
    let (status, conversation) = api
        .post(
            &format!("/api/v1/ai/users/{carol}/conversations"),
            json!({ "title": "Old and new" }),
        )
        .await;
    assert_eq!(status, 201, "{conversation}");
    let id = conversation["id"].as_str().unwrap().to_owned();
    let messages = format!("/api/v1/ai/users/{carol}/conversations/{id}/messages");
    for content in ["old", "new"] {
        let message = json!({ "role": "user", "content": content, "token_count": 1 });
        assert_eq!(api.post(&messages, message).await.0, 201);
    }
    sqlx::query(
        "UPDATE ai.conversation_messages SET created_at = now() - interval '2 days'
          WHERE conversation_id = $1::uuid AND seq = 1",
    )
    .bind(&id)
    .execute(db.pool())
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = api.get(&messages).await;
        let kept: Vec<&str> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|message| message["content"].as_str())
            .collect();
        if kept == ["new"] {
            break;
        }
        assert!(Instant::now() < deadline, "still kept: {kept:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// Hits are counted in memory and written in batches; a graceful stop writes the last batch.
/// The periodic write is an hour away here, so only the shutdown can have written them.
#[tokio::test]
async fn cache_hits_made_just_before_sigterm_are_stored() {
    let db = TestDb::new(api_server::all_sets()).await;
    let config = "[ai.cache]\nhit_flush_interval = \"1h\"\n";
    let (base, mut server) = crate::spawn_binary(&db, config).await;
    let api = Api::new(&base);
    let user = api.user("hits@example.com").await;
    let entry = format!("/api/v1/ai/users/{user}/cache/greeting");
    let (status, _) = api
        .put(&entry, json!({ "value": { "text": "hello" } }))
        .await;
    assert_eq!(status, 204);
    let hits = 25;
    for _ in 0..hits {
        let (status, _) = api.get(&entry).await;
        assert_eq!(status, 200);
    }
    assert!(crate::terminate(&mut server).await.success());
    let stored: i64 = sqlx::query_scalar(
        "SELECT hit_count FROM ai.cache_entries WHERE user_id = $1::uuid AND cache_key = 'greeting'",
    )
    .bind(&user)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(stored, hits);
    db.close().await;
}
