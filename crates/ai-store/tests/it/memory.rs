//! Memory facts: observations, history, expiry, ranked search with filters, isolation.

use ai_store::{AiError, FactSearch, Memory, Observation, UserId};
use chrono::{Duration, Utc};
use serde_json::json;

use crate::support::Fixture;

fn search(text: &str) -> FactSearch {
    FactSearch {
        text: text.into(),
        category: None,
        metadata: None,
        limit: 10,
    }
}

#[tokio::test]
async fn observing_a_fact_again_raises_its_count_and_confidence_and_keeps_history() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let first = fx
        .store
        .remember(
            user,
            Observation {
                category: Some("diet".into()),
                metadata: json!({"from": "chat", "lang": "en"}),
                ..Observation::new("diet.preference", "vegetarian", 0.5)
            },
        )
        .await
        .unwrap();
    assert_eq!((first.observation_count, first.confidence), (1, 0.5));
    let second = fx
        .store
        .remember(
            user,
            Observation {
                source: "profile".into(),
                metadata: json!({"from": "settings"}),
                ..Observation::new("diet.preference", "vegetarian, no mushrooms", 0.5)
            },
        )
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.observation_count, 2);
    assert!(
        (second.confidence - 0.75).abs() < 1e-6,
        "{}",
        second.confidence
    );
    assert_eq!(second.content, "vegetarian, no mushrooms");
    assert_eq!(
        second.category.as_deref(),
        Some("diet"),
        "kept when not given again"
    );
    assert_eq!(second.metadata, json!({"from": "settings", "lang": "en"}));

    let history = fx
        .store
        .fact_history(user, "diet.preference")
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|version| (
                version.version,
                version.content.as_str(),
                version.source.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            (1, "vegetarian", "conversation"),
            (2, "vegetarian, no mushrooms", "profile")
        ]
    );
}

#[tokio::test]
async fn an_expired_fact_is_never_returned_and_starts_over_when_observed_again() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    fx.store
        .remember(
            user,
            Observation {
                expires_at: Some(Utc::now() - Duration::seconds(1)),
                ..Observation::new("mood", "hungry", 0.9)
            },
        )
        .await
        .unwrap();
    assert_eq!(fx.store.fact(user, "mood").await.unwrap(), None);
    assert!(
        fx.store
            .search_facts(user, &search("hungry"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(fx.store.facts(user, None, 10).await.unwrap().is_empty());
    let again = fx
        .store
        .remember(user, Observation::new("mood", "full", 0.3))
        .await
        .unwrap();
    assert!(
        (again.confidence - 0.3).abs() < 1e-6,
        "{}",
        again.confidence
    );
    assert_eq!(
        fx.store.fact(user, "mood").await.unwrap().unwrap().content,
        "full"
    );
}

#[tokio::test]
async fn search_ranks_the_better_match_first_and_filters() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let facts = [
        (
            "likes.coffee",
            "likes coffee with oat milk every morning",
            "drinks",
            json!({"verified": true}),
        ),
        (
            "likes.tea",
            "sometimes drinks green tea",
            "drinks",
            json!({"verified": false}),
        ),
        (
            "allergy",
            "allergic to peanuts, never oat cookies",
            "health",
            json!({}),
        ),
        ("city", "lives in Lyon", "profile", json!({})),
    ];
    for (key, content, category, metadata) in facts {
        fx.store
            .remember(
                user,
                Observation {
                    category: Some(category.into()),
                    metadata,
                    ..Observation::new(key, content, 0.8)
                },
            )
            .await
            .unwrap();
    }
    let found = fx
        .store
        .search_facts(user, &search("oat milk"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "both words needed: {found:?}");
    assert_eq!(found[0].fact.key, "likes.coffee");

    let found = fx
        .store
        .search_facts(user, &search("oat or tea"))
        .await
        .unwrap();
    let keys: Vec<&str> = found.iter().map(|found| found.fact.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(found.windows(2).all(|pair| pair[0].rank >= pair[1].rank));

    // A fact naming the words more often ranks above one naming them once.
    let found = fx
        .store
        .search_facts(user, &search("coffee or oat or milk"))
        .await
        .unwrap();
    assert_eq!(found[0].fact.key, "likes.coffee");

    let drinks = FactSearch {
        category: Some("drinks".into()),
        ..search("oat or tea")
    };
    let keys: Vec<String> = fx
        .store
        .search_facts(user, &drinks)
        .await
        .unwrap()
        .into_iter()
        .map(|found| found.fact.key)
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(!keys.contains(&"allergy".to_owned()));

    let verified = FactSearch {
        metadata: Some(json!({"verified": true})),
        ..search("oat or tea")
    };
    let found = fx.store.search_facts(user, &verified).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fact.key, "likes.coffee");
}

#[tokio::test]
async fn users_never_see_each_others_facts() {
    let fx = Fixture::new().await;
    let (alice, bob) = (fx.user().await, fx.user().await);
    fx.store
        .remember(
            alice,
            Observation::new("secret", "alice hides chocolate", 1.0),
        )
        .await
        .unwrap();
    assert_eq!(fx.store.fact(bob, "secret").await.unwrap(), None);
    assert!(
        fx.store
            .search_facts(bob, &search("chocolate"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(fx.store.facts(bob, None, 10).await.unwrap().is_empty());
    assert!(
        fx.store
            .fact_history(bob, "secret")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!fx.store.forget_fact(bob, "secret").await.unwrap());
    assert!(fx.store.fact(alice, "secret").await.unwrap().is_some());
    assert!(fx.store.forget_fact(alice, "secret").await.unwrap());
    assert!(
        fx.store
            .fact_history(alice, "secret")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let field_of = |error: AiError| match error {
        AiError::InvalidField { field, .. } => field,
        other => panic!("not an input error: {other:?}"),
    };
    let cases = [
        (Observation::new("k", "c", 1.5), "confidence"),
        (Observation::new("k", "c", f32::NAN), "confidence"),
        (Observation::new("", "c", 0.5), "key"),
        (Observation::new("k", "c\0", 0.5), "content"),
        (
            Observation {
                metadata: json!("text"),
                ..Observation::new("k", "c", 0.5)
            },
            "metadata",
        ),
    ];
    for (observation, field) in cases {
        let error = fx.store.remember(user, observation).await.unwrap_err();
        assert_eq!(field_of(error), field);
    }
    let error = fx
        .store
        .search_facts(user, &search("   "))
        .await
        .unwrap_err();
    assert_eq!(field_of(error), "text");
    let stranger = UserId::new();
    assert!(matches!(
        fx.store.remember(stranger, Observation::new("k", "c", 0.5)).await,
        Err(AiError::UserNotFound(user)) if user == stranger
    ));
}
