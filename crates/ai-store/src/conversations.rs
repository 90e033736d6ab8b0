//! Conversations and their messages, in `ai.conversations` and `ai.conversation_messages`.
//!
//! A message's `seq` is 1, 2, 3, ... within its conversation. Appending takes the next number
//! under the conversation's row lock and commits before the next append can take its own, so
//! a reader paging forward by `seq` (keyset pagination) never skips a message that commits
//! later and never sees one twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::error::AiError;
use crate::ids::{ConversationId, UserId};
use crate::store::PgAiStore;
use crate::validate;

/// Longest conversation title, in characters (the schema's limit).
pub const MAX_TITLE_CHARS: usize = 500;
/// Most messages one page or window returns.
pub const MAX_PAGE: u32 = 1_000;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    fn parse(text: &str) -> Result<Self, AiError> {
        Ok(match text {
            "system" => Self::System,
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "tool" => Self::Tool,
            other => return Err(unexpected(&format!("message role {other:?}"))),
        })
    }
}

/// A conversation to start (deserialises from a request body: every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct NewConversation {
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub title: Option<String>,
    /// A JSON object; absent or null stands for `{}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: ConversationId,
    pub user_id: UserId,
    pub title: Option<String>,
    pub metadata: serde_json::Value,
    /// Messages appended so far (also the `seq` of the last one).
    pub message_count: i32,
    pub last_message_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message to append (deserialises from a request body).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    /// Tokens the content counts for the model: what token-budget windows add up (0 when
    /// absent).
    #[serde(default)]
    pub token_count: u32,
    /// A JSON object; absent or null stands for `{}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: serde_json::Value,
}

impl NewMessage {
    pub fn new(role: Role, content: impl Into<String>, token_count: u32) -> Self {
        Self {
            role,
            content: content.into(),
            token_count,
            metadata: serde_json::Value::Null,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub conversation_id: ConversationId,
    pub seq: i32,
    pub role: Role,
    pub content: String,
    pub token_count: u32,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Which recent messages to give a model, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N messages.
    LastMessages(u32),
    /// The longest run of most recent messages whose token counts add up to at most this.
    TokenBudget(u32),
}

/// A user's conversations with the assistant.
#[async_trait]
pub trait Conversations: Send + Sync {
    async fn create_conversation(
        &self,
        user: UserId,
        conversation: NewConversation,
    ) -> Result<Conversation, AiError>;

    /// The conversation, unless it does not exist, is another user's or was deleted.
    async fn conversation(&self, user: UserId, id: ConversationId)
    -> Result<Conversation, AiError>;

    /// The user's conversations, most recently active first, `limit` at a time; pass the last
    /// one of a page as `after` for the next.
    async fn list_conversations(
        &self,
        user: UserId,
        after: Option<&Conversation>,
        limit: u32,
    ) -> Result<Vec<Conversation>, AiError>;

    /// Appends a message; it gets the conversation's next `seq`.
    async fn append_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, AiError>;

    /// Messages with `seq > after_seq`, oldest first, at most `limit` (keyset pagination:
    /// pass the last `seq` of a page to get the next).
    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: i32,
        limit: u32,
    ) -> Result<Vec<Message>, AiError>;

    /// The most recent messages that fit `window`, oldest first.
    async fn window(
        &self,
        user: UserId,
        conversation: ConversationId,
        window: Window,
    ) -> Result<Vec<Message>, AiError>;

    /// Marks the conversation deleted: it disappears from every read at once, and maintenance
    /// purges it (messages included) after the configured grace period.
    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<(), AiError>;

    /// Removes the conversation and its messages now, deleted or not.
    async fn purge_conversation(&self, user: UserId, id: ConversationId) -> Result<(), AiError>;
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: ConversationId,
    user_id: UserId,
    title: Option<String>,
    metadata: Json<serde_json::Value>,
    message_count: i32,
    last_message_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            title: row.title,
            metadata: row.metadata.0,
            message_count: row.message_count,
            last_message_at: row.last_message_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The columns of [`ConversationRow`], for `concat!`.
macro_rules! conversation_columns {
    () => {
        "id, user_id, title, metadata, message_count, last_message_at, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    conversation_id: ConversationId,
    seq: i32,
    role: String,
    content: String,
    token_count: i32,
    metadata: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for Message {
    type Error = AiError;

    fn try_from(row: MessageRow) -> Result<Self, AiError> {
        Ok(Self {
            conversation_id: row.conversation_id,
            seq: row.seq,
            role: Role::parse(&row.role)?,
            content: row.content,
            token_count: u32::try_from(row.token_count)
                .map_err(|_| unexpected(&format!("token count {}", row.token_count)))?,
            metadata: row.metadata.0,
            created_at: row.created_at,
        })
    }
}

/// A row of [`messages_sql!`]: a message, or NULLs when the conversation has none in range.
#[derive(sqlx::FromRow)]
struct OptionalMessage {
    conversation_id: ConversationId,
    seq: Option<i32>,
    role: Option<String>,
    content: Option<String>,
    token_count: Option<i32>,
    metadata: Option<Json<serde_json::Value>>,
    created_at: Option<DateTime<Utc>>,
}

impl OptionalMessage {
    fn into_message(self) -> Result<Option<Message>, AiError> {
        let (
            Some(seq),
            Some(role),
            Some(content),
            Some(token_count),
            Some(metadata),
            Some(created_at),
        ) = (
            self.seq,
            self.role,
            self.content,
            self.token_count,
            self.metadata,
            self.created_at,
        )
        else {
            return Ok(None);
        };
        Message::try_from(MessageRow {
            conversation_id: self.conversation_id,
            seq,
            role,
            content,
            token_count,
            metadata,
            created_at,
        })
        .map(Some)
    }
}

/// Messages of a live conversation of the user from `seq` `$3` on, in the direction `$cmp`
/// and `$order` give, at most `$4`. One row with NULL message columns when the conversation
/// has none in range; no row when the conversation is not there.
///
/// Two statements rather than one with the direction as a parameter: an `ORDER BY` on an
/// expression of a parameter cannot walk the primary key, and would read and sort the whole
/// conversation for a window of its last messages. For the same reason messages are not
/// filtered by user: the conversation is, and the schema's foreign key on
/// `(user_id, conversation_id)` keeps its messages its user's; a filter on the messages' user
/// would lead the planner to intersect two indexes and sort every message.
macro_rules! messages_sql {
    ($cmp:literal, $order:literal) => {
        concat!(
            "SELECT c.id AS conversation_id, m.seq, m.role, m.content, m.token_count, m.metadata, m.created_at
               FROM ai.conversations c
               LEFT JOIN LATERAL (
                   SELECT * FROM ai.conversation_messages m
                    WHERE m.conversation_id = c.id AND m.seq ",
            $cmp,
            " $3
                    ORDER BY m.seq ",
            $order,
            " LIMIT $4
               ) m ON true
              WHERE c.id = $1 AND c.user_id = $2 AND c.deleted_at IS NULL"
        )
    };
}
/// Oldest first, after `$3`.
const MESSAGES_AFTER_SQL: &str = messages_sql!(">", "ASC");
/// Newest first, before `$3`.
const MESSAGES_BEFORE_SQL: &str = messages_sql!("<", "DESC");

fn unexpected(what: &str) -> AiError {
    AiError::UnexpectedData(format!("unexpected {what} in schema ai"))
}

fn metadata_or_empty(
    field: &'static str,
    metadata: serde_json::Value,
) -> Result<serde_json::Value, AiError> {
    let metadata = if metadata.is_null() {
        serde_json::json!({})
    } else {
        metadata
    };
    validate::metadata(field, &metadata)?;
    Ok(metadata)
}

fn page_size(limit: u32) -> Result<i64, AiError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(AiError::InvalidField {
            field: "limit",
            reason: format!("must be 1 to {MAX_PAGE}, got {limit}"),
        });
    }
    Ok(i64::from(limit))
}

impl PgAiStore {
    /// Messages of `conversation` in range (see [`messages_sql!`]), oldest first.
    async fn message_range(
        &self,
        user: UserId,
        conversation: ConversationId,
        from_seq: i32,
        limit: i64,
        newest_first: bool,
    ) -> Result<Vec<Message>, AiError> {
        let rows: Vec<OptionalMessage> = on_connection!(self, |connection| async {
            let statement = if newest_first {
                MESSAGES_BEFORE_SQL
            } else {
                MESSAGES_AFTER_SQL
            };
            Ok(sqlx::query_as(statement)
                .bind(conversation)
                .bind(user)
                .bind(from_seq)
                .bind(limit)
                .fetch_all(connection)
                .await?)
        })?;
        if rows.is_empty() {
            return Err(AiError::ConversationNotFound(conversation));
        }
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(message) = row.into_message()? {
                messages.push(message);
            }
        }
        if newest_first {
            messages.reverse();
        }
        Ok(messages)
    }
}

#[async_trait]
impl Conversations for PgAiStore {
    async fn create_conversation(
        &self,
        user: UserId,
        conversation: NewConversation,
    ) -> Result<Conversation, AiError> {
        if let Some(title) = &conversation.title {
            validate::text("title", title, MAX_TITLE_CHARS, true)?;
        }
        let metadata = metadata_or_empty("metadata", conversation.metadata)?;
        let (title, metadata, id) = (&conversation.title, &metadata, ConversationId::new());
        let row: ConversationRow = on_connection!(self, |connection| async {
            sqlx::query_as(concat!(
                        "INSERT INTO ai.conversations (id, user_id, title, metadata) VALUES ($1, $2, $3, $4)
                         RETURNING ",
                        conversation_columns!()
                    ))
                        .bind(id)
                        .bind(user)
                        .bind(title)
                        .bind(Json(metadata))
                        .fetch_one(connection)
                        .await
                        .map_err(|error| AiError::or_unknown_user(error, user))
        })?;
        Ok(row.into())
    }

    async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<Conversation, AiError> {
        let row: Option<ConversationRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM ai.conversations WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
            ))
            .bind(id)
            .bind(user)
            .fetch_optional(connection)
            .await?)
        })?;
        row.map(Conversation::from)
            .ok_or(AiError::ConversationNotFound(id))
    }

    async fn list_conversations(
        &self,
        user: UserId,
        after: Option<&Conversation>,
        limit: u32,
    ) -> Result<Vec<Conversation>, AiError> {
        let limit = page_size(limit)?;
        let (after_time, after_id) = (after.map(|c| c.updated_at), after.map(|c| c.id));
        let rows: Vec<ConversationRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM ai.conversations
                          WHERE user_id = $1 AND deleted_at IS NULL
                            AND ($2::timestamptz IS NULL OR (updated_at, id) < ($2, $3))
                          ORDER BY updated_at DESC, id DESC
                          LIMIT $4"
            ))
            .bind(user)
            .bind(after_time)
            .bind(after_id)
            .bind(limit)
            .fetch_all(connection)
            .await?)
        })?;
        Ok(rows.into_iter().map(Conversation::from).collect())
    }

    async fn append_message(
        &self,
        user: UserId,
        conversation: ConversationId,
        message: NewMessage,
    ) -> Result<Message, AiError> {
        validate::content("content", &message.content)?;
        let token_count =
            i32::try_from(message.token_count).map_err(|_| AiError::InvalidField {
                field: "token_count",
                reason: format!("at most {}", i32::MAX),
            })?;
        let metadata = metadata_or_empty("metadata", message.metadata)?;
        let (content, metadata, role) = (&message.content, &metadata, message.role.as_str());
        let row: Option<MessageRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(
                        "WITH numbered AS (
                             UPDATE ai.conversations
                                SET message_count = message_count + 1, last_message_at = now()
                              WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
                          RETURNING id, user_id, message_count
                         )
                         INSERT INTO ai.conversation_messages
                                (conversation_id, seq, user_id, role, content, token_count, metadata)
                         SELECT id, message_count, user_id, $3, $4, $5, $6 FROM numbered
                         RETURNING conversation_id, seq, role, content, token_count, metadata, created_at",
                    )
                    .bind(conversation)
                    .bind(user)
                    .bind(role)
                    .bind(content)
                    .bind(token_count)
                    .bind(Json(metadata))
                    .fetch_optional(connection)
                    .await?)
        })?;
        row.ok_or(AiError::ConversationNotFound(conversation))?
            .try_into()
    }

    async fn messages(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: i32,
        limit: u32,
    ) -> Result<Vec<Message>, AiError> {
        let limit = page_size(limit)?;
        self.message_range(user, conversation, after_seq, limit, false)
            .await
    }

    async fn window(
        &self,
        user: UserId,
        conversation: ConversationId,
        window: Window,
    ) -> Result<Vec<Message>, AiError> {
        match window {
            Window::LastMessages(count) => {
                let limit = page_size(count)?;
                self.message_range(user, conversation, i32::MAX, limit, true)
                    .await
            }
            Window::TokenBudget(budget) => {
                // Newest first, a chunk at a time, until the budget is spent: a long
                // conversation is not read whole for a short window.
                const CHUNK: i64 = 200;
                let mut kept: Vec<Message> = Vec::new();
                let mut spent = 0_u64;
                let mut before = i32::MAX;
                loop {
                    let chunk = self
                        .message_range(user, conversation, before, CHUNK, true)
                        .await?;
                    let exhausted = chunk.len() < CHUNK as usize;
                    for message in chunk.into_iter().rev() {
                        spent += u64::from(message.token_count);
                        if spent > u64::from(budget) {
                            kept.reverse();
                            return Ok(kept);
                        }
                        before = message.seq;
                        kept.push(message);
                    }
                    if exhausted {
                        kept.reverse();
                        return Ok(kept);
                    }
                }
            }
        }
    }

    async fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<(), AiError> {
        let deleted = on_connection!(self, |connection| async {
            Ok(sqlx::query(
                "UPDATE ai.conversations SET deleted_at = now()
                          WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(user)
            .execute(connection)
            .await?
            .rows_affected())
        })?;
        if deleted == 0 {
            return Err(AiError::ConversationNotFound(id));
        }
        Ok(())
    }

    async fn purge_conversation(&self, user: UserId, id: ConversationId) -> Result<(), AiError> {
        let purged = on_connection!(self, |connection| async {
            Ok(
                sqlx::query("DELETE FROM ai.conversations WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user)
                    .execute(connection)
                    .await?
                    .rows_affected(),
            )
        })?;
        if purged == 0 {
            return Err(AiError::ConversationNotFound(id));
        }
        Ok(())
    }
}
