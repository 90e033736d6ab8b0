//! The response cache on the database tier: TTLs, isolation, hit counts, cleanup, the
//! stampede guard, bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ai_store::{AiConfig, AiError, CacheConfig, ResponseCache, Ttl, UserId};
use db_core::sqlx;
use futures_util::FutureExt;
use serde_json::json;

use crate::support::{Fixture, value_of};

#[tokio::test]
async fn set_get_delete_and_replace() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    assert_eq!(cache.get(user, "greeting").await.unwrap(), None);
    cache
        .set(user, "greeting", &json!({"text": "hello"}), Ttl::Default)
        .await
        .unwrap();
    let hit = cache.get(user, "greeting").await.unwrap().unwrap();
    assert_eq!(
        hit.parse::<serde_json::Value>().unwrap(),
        json!({"text": "hello"})
    );
    assert_eq!(hit.hit_count, 1);
    assert!(hit.expires_at.is_some() && hit.sliding_ttl.is_none());

    cache
        .set(user, "greeting", &json!("bonjour"), Ttl::Never)
        .await
        .unwrap();
    let replaced = cache.get(user, "greeting").await.unwrap().unwrap();
    assert_eq!(
        replaced.parse::<serde_json::Value>().unwrap(),
        json!("bonjour")
    );
    assert_eq!(replaced.expires_at, None);
    assert_eq!(
        replaced.hit_count, 1,
        "a replaced entry counts its own hits"
    );

    assert!(cache.delete(user, "greeting").await.unwrap());
    assert!(!cache.delete(user, "greeting").await.unwrap());
    assert_eq!(cache.get(user, "greeting").await.unwrap(), None);
}

#[tokio::test]
async fn many_keys_read_at_once_answer_as_single_reads_would() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let (alice, bob) = (fx.user().await, fx.user().await);
    cache
        .set(alice, "a", &json!("alice a"), Ttl::Default)
        .await
        .unwrap();
    cache
        .set(alice, "b", &json!("alice b"), Ttl::Never)
        .await
        .unwrap();
    cache
        .set(bob, "a", &json!("bob a"), Ttl::Default)
        .await
        .unwrap();
    let window = Duration::from_millis(800);
    cache
        .set(bob, "slide", &json!("s"), Ttl::Sliding(window))
        .await
        .unwrap();
    cache
        .set(
            bob,
            "short",
            &json!(0),
            Ttl::Absolute(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    // Past the short entry's life and half the sliding window: a read must renew that one.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = cache.stats();
    let keys = [
        (bob, "a"),
        (alice, "missing"),
        (alice, "a"),
        (bob, "short"),
        (alice, "b"),
        (bob, "b"),
        (alice, "a"),
        (bob, "slide"),
    ];
    let found = cache.get_many(&keys).await.unwrap();
    let values: Vec<Option<serde_json::Value>> = found
        .iter()
        .map(|hit| {
            hit.as_ref()
                .map(|hit| hit.parse::<serde_json::Value>().unwrap())
        })
        .collect();
    assert_eq!(
        values,
        [
            Some(json!("bob a")),
            None,
            Some(json!("alice a")),
            None,
            Some(json!("alice b")),
            None,
            Some(json!("alice a")),
            Some(json!("s")),
        ]
    );
    let after = cache.stats();
    assert_eq!(after.database_hits - before.database_hits, 5);
    assert_eq!(after.misses - before.misses, 2);
    assert_eq!(after.expired - before.expired, 1);
    // The key asked twice counted two hits, as two reads would.
    let single = cache.get(alice, "a").await.unwrap().unwrap();
    assert_eq!(single.hit_count, 3);

    // The sliding entry was renewed by the batch read: it outlives its first window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.get(bob, "slide").await.unwrap().is_some());

    assert_eq!(cache.get_many(&[]).await.unwrap(), Vec::new());
    let error = cache
        .get_many(&[(alice, "a"), (alice, "")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, AiError::InvalidField { field: "key", .. }),
        "{error:?}"
    );
    assert!(ai_store::check_key(&"x".repeat(513)).is_err());
    assert!(ai_store::check_key("a").is_ok());
}

#[tokio::test]
async fn an_entry_lives_exactly_its_ttl_whether_or_not_cleanup_ran() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    cache
        .set(
            user,
            "short",
            &json!(1),
            Ttl::Absolute(Duration::from_millis(600)),
        )
        .await
        .unwrap();
    cache
        .set(user, "forever", &json!(2), Ttl::Never)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cache.get(user, "short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cache.stats();
    assert_eq!(cache.get(user, "short").await.unwrap(), None);
    assert_eq!(cache.stats().expired, before.expired + 1);
    // Still in the table: only the read refused it.
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ai.cache_entries WHERE cache_key = 'short'")
            .fetch_one(fx.db.pool())
            .await
            .unwrap();
    assert_eq!(rows, 1);
    assert!(cache.get(user, "forever").await.unwrap().is_some());
}

#[tokio::test]
async fn a_sliding_entry_lives_while_it_is_read() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    let window = Duration::from_millis(800);
    cache
        .set(user, "chat-context", &json!("ctx"), Ttl::Sliding(window))
        .await
        .unwrap();
    // Read every 300 ms for 2.4 s: three windows, never one whole window without a read.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hit = cache.get(user, "chat-context").await.unwrap();
        assert!(hit.is_some_and(|hit| hit.sliding_ttl == Some(window)));
    }
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    assert_eq!(cache.get(user, "chat-context").await.unwrap(), None);
}

#[tokio::test]
async fn users_never_see_each_others_entries() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let (alice, bob) = (fx.user().await, fx.user().await);
    cache
        .set(alice, "k", &json!("alice's"), Ttl::Default)
        .await
        .unwrap();
    assert_eq!(cache.get(bob, "k").await.unwrap(), None);
    assert!(!cache.delete(bob, "k").await.unwrap());
    cache
        .set(bob, "k", &json!("bob's"), Ttl::Default)
        .await
        .unwrap();
    assert_eq!(
        value_of(cache.get(alice, "k").await.unwrap()).unwrap(),
        json!("alice's")
    );
    assert_eq!(
        value_of(cache.get(bob, "k").await.unwrap()).unwrap(),
        json!("bob's")
    );
}

#[tokio::test]
async fn hits_are_counted_in_memory_and_written_in_batches() {
    let config = AiConfig {
        cache: CacheConfig {
            // Long enough that only the explicit flush below writes.
            hit_flush_interval: Duration::from_secs(3600),
            ..CacheConfig::default()
        },
        ..AiConfig::default()
    };
    let fx = Fixture::with_config(config).await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    cache
        .set(user, "k", &json!(true), Ttl::Default)
        .await
        .unwrap();
    let stored_hits = || async {
        sqlx::query_scalar::<_, i64>("SELECT hit_count FROM ai.cache_entries WHERE user_id = $1")
            .bind(user)
            .fetch_one(fx.db.pool())
            .await
            .unwrap()
    };
    for expected in 1..=5 {
        assert_eq!(
            cache.get(user, "k").await.unwrap().unwrap().hit_count,
            expected
        );
    }
    assert_eq!(stored_hits().await, 0, "no write per hit");
    assert_eq!(cache.flush_hits().await.unwrap(), 1);
    assert_eq!(stored_hits().await, 5);
    assert_eq!(cache.get(user, "k").await.unwrap().unwrap().hit_count, 6);
    let stats = cache.stats();
    assert_eq!((stats.database_hits, stats.misses), (6, 0));
    assert!((stats.hit_ratio() - 1.0).abs() < f64::EPSILON);
}

#[tokio::test]
async fn cleanup_removes_expired_entries_in_bounded_batches() {
    let config = AiConfig {
        cache: CacheConfig {
            cleanup_batch: 7,
            ..CacheConfig::default()
        },
        ..AiConfig::default()
    };
    let fx = Fixture::with_config(config).await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    for i in 0..30 {
        let ttl = if i < 20 {
            Ttl::Absolute(Duration::from_millis(1))
        } else {
            Ttl::Never
        };
        cache
            .set(user, &format!("k{i}"), &json!(i), ttl)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.cleanup_expired().await.unwrap(), 20);
    assert_eq!(cache.cleanup_expired().await.unwrap(), 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ai.cache_entries")
        .fetch_one(fx.db.pool())
        .await
        .unwrap();
    assert_eq!(left, 10);
}

#[tokio::test]
async fn thirty_two_concurrent_misses_compute_once() {
    let fx = Fixture::new().await;
    let cache = Arc::new(fx.store.cache().clone());
    let user = fx.user().await;
    let computed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (cache, computed) = (cache.clone(), computed.clone());
            tokio::spawn(async move {
                let compute = async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    // A slow model call: every other task arrives while it runs.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(json!({"answer": 42}))
                };
                cache
                    .get_or_compute(user, "expensive", Ttl::Default, compute.boxed())
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().parse::<serde_json::Value>().unwrap(),
            json!({"answer": 42})
        );
    }
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.stats().misses,
        32,
        "each caller missed once, none twice"
    );
}

#[tokio::test]
async fn a_failed_computation_stores_nothing_and_the_next_caller_computes() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    let failure = async { Err(AiError::Compute("model unavailable".into())) };
    let error = cache
        .get_or_compute(user, "k", Ttl::Default, failure.boxed())
        .await
        .unwrap_err();
    assert!(matches!(error, AiError::Compute(_)), "{error:?}");
    assert_eq!(cache.get(user, "k").await.unwrap(), None);
    let value = cache
        .get_or_compute(
            user,
            "k",
            Ttl::Default,
            async { Ok(json!("second try")) }.boxed(),
        )
        .await
        .unwrap();
    assert_eq!(
        value.parse::<serde_json::Value>().unwrap(),
        json!("second try")
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let fx = Fixture::new().await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    for key in [String::new(), "k\0".into(), "x".repeat(513)] {
        let error = cache.get(user, &key).await.unwrap_err();
        assert!(
            matches!(error, AiError::InvalidField { field: "key", .. }),
            "{error:?}"
        );
    }
    let error = cache
        .set(user, "k", &json!({"text": "nul \u{0}"}), Ttl::Default)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AiError::InvalidField { field: "value", .. }),
        "{error:?}"
    );
    let error = cache
        .set(user, "k", &json!(1), Ttl::Absolute(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AiError::InvalidField { field: "ttl", .. }),
        "{error:?}"
    );
    let stranger = UserId::new();
    let error = cache
        .set(stranger, "k", &json!(1), Ttl::Default)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AiError::UserNotFound(user) if user == stranger),
        "{error:?}"
    );
}
