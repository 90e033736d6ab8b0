//! Conversations: sequence numbers, pagination under concurrent appends, windows, deletion,
//! isolation between users.

use std::collections::BTreeSet;
use std::sync::Arc;

use ai_store::{
    AiError, Conversations, Message, NewConversation, NewMessage, Role, UserId, Window,
};
use db_core::sqlx;
use serde_json::json;

use crate::support::Fixture;

async fn conversation_with(fx: &Fixture, user: UserId, tokens: &[u32]) -> ai_store::ConversationId {
    let conversation = fx
        .store
        .create_conversation(user, NewConversation::default())
        .await
        .unwrap();
    for (i, tokens) in tokens.iter().enumerate() {
        fx.store
            .append_message(
                user,
                conversation.id,
                NewMessage::new(Role::User, format!("message {}", i + 1), *tokens),
            )
            .await
            .unwrap();
    }
    conversation.id
}

fn seqs(messages: &[Message]) -> Vec<i32> {
    messages.iter().map(|message| message.seq).collect()
}

#[tokio::test]
async fn messages_are_numbered_and_paged_in_order() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let conversation = fx
        .store
        .create_conversation(
            user,
            NewConversation {
                title: Some("Dinner ideas".into()),
                metadata: json!({"channel": "app"}),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (conversation.message_count, conversation.title.as_deref()),
        (0, Some("Dinner ideas"))
    );
    let first = fx
        .store
        .append_message(
            user,
            conversation.id,
            NewMessage {
                metadata: json!({"lang": "en"}),
                ..NewMessage::new(Role::User, "What can I cook?", 5)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (first.seq, first.role, first.token_count),
        (1, Role::User, 5)
    );
    assert_eq!(first.metadata, json!({"lang": "en"}));
    for i in 2..=10 {
        let message = fx
            .store
            .append_message(
                user,
                conversation.id,
                NewMessage::new(Role::Assistant, "...", 1),
            )
            .await
            .unwrap();
        assert_eq!(message.seq, i);
    }
    let page = fx
        .store
        .messages(user, conversation.id, 0, 4)
        .await
        .unwrap();
    assert_eq!(seqs(&page), [1, 2, 3, 4]);
    let page = fx
        .store
        .messages(user, conversation.id, 4, 4)
        .await
        .unwrap();
    assert_eq!(seqs(&page), [5, 6, 7, 8]);
    let page = fx
        .store
        .messages(user, conversation.id, 8, 4)
        .await
        .unwrap();
    assert_eq!(seqs(&page), [9, 10]);
    assert!(
        fx.store
            .messages(user, conversation.id, 10, 4)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = fx.store.conversation(user, conversation.id).await.unwrap();
    assert_eq!(stored.message_count, 10);
    assert!(stored.last_message_at.is_some());
}

#[tokio::test]
async fn a_reader_paging_while_writers_append_sees_every_message_once() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let conversation = conversation_with(&fx, user, &[]).await;
    let store = Arc::new(fx.store.clone());
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    store
                        .append_message(
                            user,
                            conversation,
                            NewMessage::new(Role::User, format!("writer {writer} message {i}"), 1),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = 0;
    let mut writers_done = false;
    loop {
        let page = store.messages(user, conversation, after, 7).await.unwrap();
        if let Some(last) = page.last() {
            after = last.seq;
        }
        seen.extend(seqs(&page));
        if page.is_empty() {
            if writers_done {
                break;
            }
            writers_done = writers.iter().all(|writer| writer.is_finished());
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        seen,
        (1..=400).collect::<Vec<_>>(),
        "gaps, repeats or disorder"
    );
}

#[tokio::test]
async fn windows_take_the_most_recent_messages_that_fit() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let tokens: Vec<u32> = (1..=450).map(|i| i % 7).collect();
    let conversation = conversation_with(&fx, user, &tokens).await;

    let last = fx
        .store
        .window(user, conversation, Window::LastMessages(50))
        .await
        .unwrap();
    assert_eq!(seqs(&last), (401..=450).collect::<Vec<_>>());

    // More than one chunk of 200 messages is needed for this budget.
    let budget = 1_000;
    let window = fx
        .store
        .window(user, conversation, Window::TokenBudget(budget))
        .await
        .unwrap();
    let used: u32 = window.iter().map(|message| message.token_count).sum();
    let first = window.first().unwrap().seq;
    assert_eq!(window.last().unwrap().seq, 450);
    assert_eq!(seqs(&window), (first..=450).collect::<Vec<_>>());
    assert!(used <= budget);
    assert!(
        used + tokens[first as usize - 2] > budget,
        "one more message would have fitted"
    );

    let everything = fx
        .store
        .window(user, conversation, Window::TokenBudget(u32::MAX))
        .await
        .unwrap();
    assert_eq!(everything.len(), 450);
    let none = fx
        .store
        .window(user, conversation, Window::TokenBudget(0))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "the last message alone exceeds a budget of 0: {none:?}"
    );
}

#[tokio::test]
async fn a_deleted_conversation_disappears_and_purge_removes_it() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let conversation = conversation_with(&fx, user, &[1, 2, 3]).await;
    fx.store
        .delete_conversation(user, conversation)
        .await
        .unwrap();
    assert!(matches!(
        fx.store.conversation(user, conversation).await,
        Err(AiError::ConversationNotFound(_))
    ));
    assert!(matches!(
        fx.store.messages(user, conversation, 0, 10).await,
        Err(AiError::ConversationNotFound(_))
    ));
    assert!(matches!(
        fx.store
            .append_message(user, conversation, NewMessage::new(Role::User, "hello?", 1))
            .await,
        Err(AiError::ConversationNotFound(_))
    ));
    assert!(
        fx.store
            .list_conversations(user, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    fx.store
        .purge_conversation(user, conversation)
        .await
        .unwrap();
    let left: i64 = db_core::sqlx::query_scalar(
        "SELECT count(*) FROM ai.conversation_messages WHERE conversation_id = $1",
    )
    .bind(conversation)
    .fetch_one(fx.db.pool())
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn another_user_can_neither_read_nor_write_a_conversation() {
    let fx = Fixture::new().await;
    let (alice, mallory) = (fx.user().await, fx.user().await);
    let conversation = conversation_with(&fx, alice, &[1]).await;
    let not_found =
        |result: Result<_, AiError>| matches!(result, Err(AiError::ConversationNotFound(_)));
    assert!(not_found(
        fx.store.conversation(mallory, conversation).await.map(drop)
    ));
    assert!(not_found(
        fx.store
            .messages(mallory, conversation, 0, 10)
            .await
            .map(drop)
    ));
    assert!(not_found(
        fx.store
            .window(mallory, conversation, Window::LastMessages(10))
            .await
            .map(drop)
    ));
    assert!(not_found(
        fx.store
            .append_message(mallory, conversation, NewMessage::new(Role::User, "hi", 1))
            .await
            .map(drop)
    ));
    assert!(not_found(
        fx.store.delete_conversation(mallory, conversation).await
    ));
    assert!(not_found(
        fx.store.purge_conversation(mallory, conversation).await
    ));
    assert!(
        fx.store
            .list_conversations(mallory, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        fx.store
            .messages(alice, conversation, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // Reads do not filter messages by user: the schema itself refuses a message whose user
    // is not its conversation's.
    let foreign = sqlx::query(
        "INSERT INTO ai.conversation_messages (conversation_id, seq, user_id, role, content)
         VALUES ($1, 2, $2, 'user', 'planted')",
    )
    .bind(conversation)
    .bind(mallory)
    .execute(fx.db.pool())
    .await
    .unwrap_err();
    assert_eq!(
        foreign
            .as_database_error()
            .and_then(|error| error.constraint()),
        Some("conversation_messages_conversation_fkey")
    );
}

#[tokio::test]
async fn conversations_are_listed_most_recent_first_page_by_page() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(conversation_with(&fx, user, &[]).await);
    }
    // Activity moves the first one to the top.
    fx.store
        .append_message(user, created[0], NewMessage::new(Role::User, "again", 1))
        .await
        .unwrap();
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = fx
            .store
            .list_conversations(user, after.as_ref(), 3)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        listed.extend(page.iter().map(|conversation| conversation.id));
        after = page.last().cloned();
    }
    assert_eq!(listed.len(), 7);
    assert_eq!(listed[0], created[0]);
    assert_eq!(listed.iter().collect::<BTreeSet<_>>().len(), 7);
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let invalid = |result: Result<(), AiError>, field: &str| matches!(result, Err(AiError::InvalidField { field: f, .. }) if f == field);
    let long_title = NewConversation {
        title: Some("t".repeat(501)),
        ..NewConversation::default()
    };
    assert!(invalid(
        fx.store
            .create_conversation(user, long_title)
            .await
            .map(drop),
        "title"
    ));
    let list = NewConversation {
        metadata: json!([1, 2]),
        ..NewConversation::default()
    };
    assert!(invalid(
        fx.store.create_conversation(user, list).await.map(drop),
        "metadata"
    ));
    let conversation = conversation_with(&fx, user, &[]).await;
    let nul = NewMessage::new(Role::User, "a\0b", 1);
    assert!(invalid(
        fx.store
            .append_message(user, conversation, nul)
            .await
            .map(drop),
        "content"
    ));
    let huge = NewMessage::new(Role::User, "x", u32::MAX);
    assert!(invalid(
        fx.store
            .append_message(user, conversation, huge)
            .await
            .map(drop),
        "token_count"
    ));
    assert!(invalid(
        fx.store.messages(user, conversation, 0, 0).await.map(drop),
        "limit"
    ));
    assert!(invalid(
        fx.store
            .messages(user, conversation, 0, 5_000)
            .await
            .map(drop),
        "limit"
    ));
    let stranger = UserId::new();
    assert!(matches!(
        fx.store.create_conversation(stranger, NewConversation::default()).await,
        Err(AiError::UserNotFound(user)) if user == stranger
    ));
}
