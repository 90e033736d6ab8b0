//! Users against a real PostgreSQL (a fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use core_store::{NewUser, PgUsers, UserError, UserId, Users};
use db_core::testing::TestDb;

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        display_name: Some("Ada".into()),
    }
}

async fn count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.users")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_is_created_and_read_back() {
    let db = TestDb::new(vec![core_store::migration_set()]).await;
    let users = PgUsers::new(db.db());
    let created = users.create(&new_user("ada@example.com")).await.unwrap();
    assert_eq!(created.email, "ada@example.com");
    assert_eq!(users.get(created.id).await.unwrap(), created);
    let missing = UserId::new();
    assert!(matches!(users.get(missing).await, Err(UserError::NotFound(id)) if id == missing));
    db.close().await;
}

#[tokio::test]
async fn refused_fields_write_nothing() {
    let db = TestDb::new(vec![core_store::migration_set()]).await;
    let users = PgUsers::new(db.db());
    let bad_email = users.create(&new_user("not an address")).await.unwrap_err();
    assert!(
        matches!(bad_email, UserError::InvalidField { field: "email", .. }),
        "{bad_email:?}"
    );
    let mut long_name = new_user("b@example.com");
    long_name.display_name = Some("x".repeat(201));
    let bad_name = users.create(&long_name).await.unwrap_err();
    assert!(
        matches!(
            bad_name,
            UserError::InvalidField {
                field: "display_name",
                ..
            }
        ),
        "{bad_name:?}"
    );
    assert_eq!(count(&db).await, 0);
    db.close().await;
}

/// Many clients racing for one address: exactly one wins, the others learn it is taken.
#[tokio::test]
async fn an_email_is_taken_once_under_concurrent_creates() {
    let db = TestDb::new(vec![core_store::migration_set()]).await;
    let users = PgUsers::new(db.db());
    let attempts = (0..16).map(|_| {
        let users = users.clone();
        tokio::spawn(async move { users.create(&new_user("race@example.com")).await })
    });
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(UserError::EmailTaken) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(count(&db).await, 1);
    db.close().await;
}
