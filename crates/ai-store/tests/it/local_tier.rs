//! The in-process tier, across two "processes" (two stores with pools of their own): a
//! change in one is never served stale by the other for longer than a notification takes,
//! also when the listening connection is lost.

use std::time::Duration;

use ai_store::PersonalData;
use ai_store::{AiConfig, CacheConfig, ResponseCache, Ttl};
use db_core::sqlx;
use serde_json::json;

use crate::support::{Fixture, eventually, value_of};

fn with_local_tier() -> AiConfig {
    AiConfig {
        cache: CacheConfig {
            local_entries: 10_000,
            ..CacheConfig::default()
        },
        ..AiConfig::default()
    }
}

const NOTIFICATION: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_set_or_delete_in_one_process_invalidates_the_others() {
    let fx = Fixture::with_config(with_local_tier()).await;
    let other = fx.other_process(with_local_tier()).await;
    let (here, there) = (fx.store.cache(), other.cache());
    let user = fx.user().await;

    here.set(user, "menu", &json!("v1"), Ttl::Default)
        .await
        .unwrap();
    // The first reads may race the set's own invalidation and go to the database; once it
    // has arrived, reads are served from memory.
    assert!(
        eventually(NOTIFICATION, || async {
            let hit = there.get(user, "menu").await.unwrap().unwrap();
            assert_eq!(hit.parse::<serde_json::Value>().unwrap(), json!("v1"));
            there.stats().local_hits > 0
        })
        .await,
        "never served from memory"
    );

    here.set(user, "menu", &json!("v2"), Ttl::Default)
        .await
        .unwrap();
    assert!(
        eventually(NOTIFICATION, || async {
            value_of(there.get(user, "menu").await.unwrap()).unwrap() == json!("v2")
        })
        .await,
        "the other process still serves the replaced value"
    );

    here.delete(user, "menu").await.unwrap();
    assert!(
        eventually(NOTIFICATION, || async {
            there.get(user, "menu").await.unwrap().is_none()
        })
        .await,
        "the other process still serves a deleted entry"
    );
}

#[tokio::test]
async fn forgetting_a_user_empties_every_process_tier() {
    let fx = Fixture::with_config(with_local_tier()).await;
    let other = fx.other_process(with_local_tier()).await;
    let user = fx.user().await;
    fx.store
        .cache()
        .set(user, "k", &json!(1), Ttl::Default)
        .await
        .unwrap();
    assert!(other.cache().get(user, "k").await.unwrap().is_some());
    fx.store.forget_user(user).await.unwrap();
    assert!(
        eventually(NOTIFICATION, || async {
            other.cache().get(user, "k").await.unwrap().is_none()
        })
        .await
    );
}

#[tokio::test]
async fn a_local_copy_never_outlives_its_entry() {
    let fx = Fixture::with_config(with_local_tier()).await;
    let cache = fx.store.cache();
    let user = fx.user().await;
    cache
        .set(
            user,
            "k",
            &json!(1),
            Ttl::Absolute(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert!(cache.get(user, "k").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(cache.get(user, "k").await.unwrap(), None);
}

#[tokio::test]
async fn after_losing_its_listener_a_process_serves_no_stale_copy() {
    let fx = Fixture::with_config(with_local_tier()).await;
    let other = fx.other_process(with_local_tier()).await;
    let (here, there) = (fx.store.cache(), other.cache());
    let user = fx.user().await;
    here.set(user, "k", &json!("before"), Ttl::Default)
        .await
        .unwrap();
    assert_eq!(
        value_of(there.get(user, "k").await.unwrap()).unwrap(),
        json!("before")
    );

    // Cut every listening connection: notifications sent until they are back are lost.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(fx.db.pool())
    .await
    .unwrap();
    assert!(!cut.is_empty(), "no listening connection found");
    here.set(user, "k", &json!("after"), Ttl::Default)
        .await
        .unwrap();

    assert!(
        eventually(NOTIFICATION, || async {
            value_of(there.get(user, "k").await.unwrap()).unwrap() == json!("after")
        })
        .await,
        "a copy from before the outage is still served"
    );
    // Back to normal: invalidations arrive again.
    here.set(user, "k", &json!("later"), Ttl::Default)
        .await
        .unwrap();
    assert!(
        eventually(NOTIFICATION, || async {
            value_of(there.get(user, "k").await.unwrap()).unwrap() == json!("later")
        })
        .await
    );
}

#[tokio::test]
async fn many_keys_read_at_once_are_answered_from_memory_and_fill_it() {
    let fx = Fixture::with_config(with_local_tier()).await;
    let other = fx.other_process(with_local_tier()).await;
    let (here, there) = (fx.store.cache(), other.cache());
    let user = fx.user().await;
    here.set(user, "a", &json!("a1"), Ttl::Default)
        .await
        .unwrap();
    here.set(user, "b", &json!("b1"), Ttl::Default)
        .await
        .unwrap();
    // Batch reads in the other process fill its tier, then are answered from it.
    assert!(
        eventually(NOTIFICATION, || async {
            let found = there.get_many(&[(user, "a"), (user, "b")]).await.unwrap();
            assert_eq!(
                found[0]
                    .as_ref()
                    .unwrap()
                    .parse::<serde_json::Value>()
                    .unwrap(),
                json!("a1")
            );
            assert_eq!(
                found[1]
                    .as_ref()
                    .unwrap()
                    .parse::<serde_json::Value>()
                    .unwrap(),
                json!("b1")
            );
            there.stats().local_hits >= 2
        })
        .await,
        "batch reads never served from memory"
    );
    // A change here reaches the other process's batch reads too.
    here.set(user, "b", &json!("b2"), Ttl::Default)
        .await
        .unwrap();
    assert!(
        eventually(NOTIFICATION, || async {
            let found = there.get_many(&[(user, "a"), (user, "b")]).await.unwrap();
            found[1]
                .as_ref()
                .unwrap()
                .parse::<serde_json::Value>()
                .unwrap()
                == json!("b2")
        })
        .await,
        "the other process still serves the replaced value to batch reads"
    );
}
