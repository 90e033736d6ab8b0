//! Writing records of the assistant's former Sled store into schema `ai`, idempotently: a
//! record already present (by its natural key) is skipped, never overwritten, so an import can
//! be repeated or resumed and never clobbers what the service wrote since.
//!
//! Reading the Sled store is the migrator's (`migrator import-sled`); the SQL is here, with
//! the schema it writes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use crate::conversations::{MAX_TITLE_CHARS, Role};
use crate::error::AiError;
use crate::ids::{ConversationId, FactId, UserId};
use crate::memory::{MAX_CATEGORY_CHARS, MAX_FACT_KEY_CHARS};
use crate::store::PgAiStore;
use crate::validate;

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    Written,
    /// Present already (imported before, or written by the service since).
    AlreadyPresent,
    /// Expired before the import: nothing to keep.
    Expired,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyCacheEntry {
    pub user: UserId,
    pub key: String,
    pub value: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub hit_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyConversation {
    pub id: ConversationId,
    pub user: UserId,
    pub title: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// In order: they become seq 1, 2, ...
    pub messages: Vec<LegacyMessage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyMessage {
    pub role: Role,
    pub content: String,
    pub token_count: u32,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyFact {
    pub user: UserId,
    pub key: String,
    pub content: String,
    pub category: Option<String>,
    pub confidence: f32,
    pub source: String,
    pub metadata: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

fn written_if(inserted: bool) -> Imported {
    if inserted {
        Imported::Written
    } else {
        Imported::AlreadyPresent
    }
}

fn expired(expires_at: Option<DateTime<Utc>>) -> bool {
    expires_at.is_some_and(|at| at <= Utc::now())
}

impl PgAiStore {
    pub async fn import_cache_entry(&self, entry: &LegacyCacheEntry) -> Result<Imported, AiError> {
        validate::text("key", &entry.key, crate::cache::MAX_KEY_CHARS, false)?;
        validate::json("value", &entry.value)?;
        if entry.hit_count < 0 {
            return Err(AiError::InvalidField {
                field: "hit_count",
                reason: "must not be negative".into(),
            });
        }
        if expired(entry.expires_at) {
            return Ok(Imported::Expired);
        }
        let inserted = on_connection!(self, |connection| async {
            Ok(sqlx::query(
                "INSERT INTO ai.cache_entries (user_id, cache_key, value, expires_at, hit_count, created_at)
                 VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
                 ON CONFLICT (user_id, cache_key) DO NOTHING",
            )
            .bind(entry.user)
            .bind(&entry.key)
            .bind(Json(&entry.value))
            .bind(entry.expires_at)
            .bind(entry.hit_count)
            .bind(entry.created_at)
            .execute(connection)
            .await
            .map_err(|error| AiError::or_unknown_user(error, entry.user))?
            .rows_affected())
        })?;
        Ok(written_if(inserted > 0))
    }

    /// The conversation and all its messages in one transaction, or nothing if a conversation
    /// with its id exists.
    pub async fn import_conversation(
        &self,
        conversation: &LegacyConversation,
    ) -> Result<Imported, AiError> {
        if let Some(title) = &conversation.title {
            validate::text("title", title, MAX_TITLE_CHARS, true)?;
        }
        let mut token_counts = Vec::with_capacity(conversation.messages.len());
        for message in &conversation.messages {
            validate::content("content", &message.content)?;
            token_counts.push(i32::try_from(message.token_count).map_err(|_| {
                AiError::InvalidField {
                    field: "token_count",
                    reason: format!("at most {}", i32::MAX),
                }
            })?);
        }
        let count =
            i32::try_from(conversation.messages.len()).map_err(|_| AiError::InvalidField {
                field: "messages",
                reason: "too many".into(),
            })?;
        let roles: Vec<&str> = conversation
            .messages
            .iter()
            .map(|m| m.role.as_str())
            .collect();
        let contents: Vec<&str> = conversation
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        let times: Vec<Option<DateTime<Utc>>> =
            conversation.messages.iter().map(|m| m.created_at).collect();
        let last_message_at = times.iter().rev().flatten().next().copied();
        let (roles, contents, times, token_counts) = (&roles, &contents, &times, &token_counts);
        let inserted = in_transaction!(self, |connection| async {
            let inserted = sqlx::query(
                "INSERT INTO ai.conversations (id, user_id, title, message_count, last_message_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(conversation.id)
            .bind(conversation.user)
            .bind(&conversation.title)
            .bind(count)
            .bind(last_message_at)
            .bind(conversation.created_at)
            .execute(&mut *connection)
            .await
            .map_err(|error| AiError::or_unknown_user(error, conversation.user))?
            .rows_affected();
            if inserted > 0 && count > 0 {
                sqlx::query(
                    "INSERT INTO ai.conversation_messages
                            (conversation_id, seq, user_id, role, content, token_count, created_at)
                     SELECT $1, m.seq, $2, m.role, m.content, m.token_count, coalesce(m.created_at, now())
                       FROM unnest($3::text[], $4::text[], $5::integer[], $6::timestamptz[])
                                WITH ORDINALITY AS m(role, content, token_count, created_at, seq)",
                )
                .bind(conversation.id)
                .bind(conversation.user)
                .bind(roles)
                .bind(contents)
                .bind(token_counts)
                .bind(times)
                .execute(&mut *connection)
                .await?;
            }
            Ok::<_, AiError>(inserted)
        })?;
        Ok(written_if(inserted > 0))
    }

    pub async fn import_fact(&self, fact: &LegacyFact) -> Result<Imported, AiError> {
        validate::text("key", &fact.key, MAX_FACT_KEY_CHARS, false)?;
        validate::content("content", &fact.content)?;
        if let Some(category) = &fact.category {
            validate::text("category", category, MAX_CATEGORY_CHARS, false)?;
        }
        validate::text("source", &fact.source, 64, false)?;
        validate::metadata("metadata", &fact.metadata)?;
        if !(0.0..=1.0).contains(&fact.confidence) {
            return Err(AiError::InvalidField {
                field: "confidence",
                reason: format!("must be within 0 and 1, got {}", fact.confidence),
            });
        }
        if expired(fact.expires_at) {
            return Ok(Imported::Expired);
        }
        let inserted = on_connection!(self, |connection| async {
            Ok(sqlx::query(
                "INSERT INTO ai.memory_facts
                        (id, user_id, fact_key, content, category, confidence, source, metadata, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))
                 ON CONFLICT (user_id, fact_key) DO NOTHING",
            )
            .bind(FactId::new())
            .bind(fact.user)
            .bind(&fact.key)
            .bind(&fact.content)
            .bind(&fact.category)
            .bind(fact.confidence)
            .bind(&fact.source)
            .bind(Json(&fact.metadata))
            .bind(fact.expires_at)
            .bind(fact.created_at)
            .execute(connection)
            .await
            .map_err(|error| AiError::or_unknown_user(error, fact.user))?
            .rows_affected())
        })?;
        Ok(written_if(inserted > 0))
    }
}
