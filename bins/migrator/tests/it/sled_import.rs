//! `migrator import-sled` on a real Sled store built with the sled crate: what is written,
//! what is skipped and rejected (with reasons), and that a second run writes nothing.

use db_core::sqlx;
use db_core::testing::TestDb;
use serde_json::json;

use crate::cli::{json, run, stderr};

struct Legacy {
    dir: tempfile::TempDir,
}

impl Legacy {
    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// A Sled store as the assistant left it: valid records of every kind, and some that must be
/// rejected or skipped.
fn legacy_store(user: uuid::Uuid, conversation: uuid::Uuid) -> Legacy {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let stranger = uuid::Uuid::new_v4();
    let insert = |tree: &str, key: String, value: serde_json::Value| {
        db.open_tree(tree)
            .unwrap()
            .insert(key.as_bytes(), serde_json::to_vec(&value).unwrap())
            .unwrap();
    };
    insert(
        "cache",
        format!("{user}:menu"),
        json!({"value": {"dishes": ["soup"]}, "hit_count": 4}),
    );
    insert(
        "cache",
        format!("{user}:tomorrow"),
        json!({"value": "kept", "expires_at": "2099-01-01T00:00:00Z", "created_at": "2026-01-02T03:04:05Z"}),
    );
    insert(
        "cache",
        format!("{user}:stale"),
        json!({"value": 1, "expires_at": "2020-01-01T00:00:00Z"}),
    );
    insert("cache", format!("{stranger}:orphan"), json!({"value": 1}));
    insert("cache", "no-user-here".into(), json!({"value": 1}));
    db.open_tree("cache")
        .unwrap()
        .insert(format!("{user}:broken"), &b"{not json"[..])
        .unwrap();
    insert(
        "conversations",
        conversation.to_string(),
        json!({
            "user_id": user,
            "title": "Dinner",
            "created_at": "2026-01-01T10:00:00Z",
            "messages": [
                {"role": "user", "content": "What's for dinner?", "token_count": 5, "created_at": "2026-01-01T10:00:00Z"},
                {"role": "assistant", "content": "Soup.", "token_count": 2, "created_at": "2026-01-01T10:00:01Z"}
            ]
        }),
    );
    insert(
        "conversations",
        uuid::Uuid::new_v4().to_string(),
        json!({"user_id": user, "messages": [{"role": "narrator", "content": "?"}]}),
    );
    insert(
        "memory_facts",
        format!("{user}:diet"),
        json!({"content": "vegetarian", "category": "diet", "confidence": 0.9, "metadata": {"from": "chat"}}),
    );
    insert(
        "memory_facts",
        format!("{user}:sure"),
        json!({"content": "x", "confidence": 7.5}),
    );
    insert("settings", "theme".into(), json!("dark"));
    db.flush().unwrap();
    drop(db);
    Legacy { dir }
}

async fn user(db: &TestDb) -> uuid::Uuid {
    db.user().await.0
}

#[tokio::test]
async fn import_writes_skips_and_rejects_with_reasons_and_a_second_run_writes_nothing() {
    let db = TestDb::new(migrator::all_sets()).await;
    let url = db.url();
    let owner = user(&db).await;
    let conversation = uuid::Uuid::now_v7();
    let legacy = legacy_store(owner, conversation);

    let first = run(&url, &["--json", "import-sled", legacy.path()]).await;
    assert_eq!(
        first.status.code(),
        Some(3),
        "rejections: {}",
        stderr(&first)
    );
    let summary = json(&first);
    let cache = &summary["trees"]["cache"];
    assert_eq!(
        (
            &cache["read"],
            &cache["written"],
            &cache["skipped"],
            &cache["rejected"]
        ),
        (&json!(6), &json!(2), &json!(1), &json!(3)),
        "{summary:#}"
    );
    assert_eq!(cache["reasons"]["expired"], 1);
    assert_eq!(cache["reasons"]["unknown user"], 1);
    assert_eq!(cache["reasons"]["key is not <user uuid>:<name>"], 1);
    assert_eq!(cache["reasons"]["value is not the expected JSON"], 1);
    let conversations = &summary["trees"]["conversations"];
    assert_eq!(
        (&conversations["written"], &conversations["rejected"]),
        (&json!(1), &json!(1))
    );
    let facts = &summary["trees"]["memory_facts"];
    assert_eq!(
        (&facts["written"], &facts["rejected"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(facts["reasons"]["invalid confidence"], 1);
    assert_eq!(summary["ignored_trees"], json!(["settings"]));
    assert_eq!(summary["rejections"].as_array().unwrap().len(), 5);

    let (value, hits, created): (serde_json::Value, i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT value, hit_count, created_at FROM ai.cache_entries WHERE user_id = $1 AND cache_key = 'menu'",
    )
    .bind(owner)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((value, hits), (json!({"dishes": ["soup"]}), 4));
    assert!(created.timestamp() > 0);
    let messages: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT seq, role, content FROM ai.conversation_messages WHERE conversation_id = $1 ORDER BY seq",
    )
    .bind(conversation)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        messages,
        [
            (1, "user".into(), "What's for dinner?".into()),
            (2, "assistant".into(), "Soup.".into())
        ]
    );
    let count: i32 = sqlx::query_scalar("SELECT message_count FROM ai.conversations WHERE id = $1")
        .bind(conversation)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 2, "the next message appended gets seq 3");

    let second = run(&url, &["--json", "import-sled", legacy.path()]).await;
    let again = json(&second);
    for tree in ["cache", "conversations", "memory_facts"] {
        assert_eq!(again["trees"][tree]["written"], 0, "{tree}: {again:#}");
    }
    assert_eq!(again["trees"]["cache"]["reasons"]["already present"], 2);
}

#[tokio::test]
async fn import_refuses_what_is_not_a_sled_store_and_a_schema_not_yet_migrated() {
    let db = TestDb::new(migrator::all_sets()).await;
    let empty = tempfile::tempdir().unwrap();
    let missing = run(&db.url(), &["import-sled", empty.path().to_str().unwrap()]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("is not a Sled database"),
        "{}",
        stderr(&missing)
    );
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "nothing created where there was no store"
    );

    let bare = TestDb::empty().await;
    let legacy = legacy_store(uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let unmigrated = run(&bare.url(), &["import-sled", legacy.path()]).await;
    assert_eq!(unmigrated.status.code(), Some(1));
    assert!(
        stderr(&unmigrated).contains("run `migrator up` first"),
        "{}",
        stderr(&unmigrated)
    );
}
