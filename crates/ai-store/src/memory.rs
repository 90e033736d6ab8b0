//! Facts the assistant remembers about a user, in `ai.memory_facts`, with every observation
//! kept in `ai.memory_fact_history`.
//!
//! A fact is identified by `(user, key)`. Remembering it again is another observation: the
//! content, source and expiry become the new ones, the metadata is merged (new keys win), the
//! observation count rises by one and so does the confidence, combined as independent
//! evidence: `1 - (1 - old) * (1 - new)`. A fact past its expiry is never returned; observed
//! again, it starts over from the new confidence.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use crate::error::AiError;
use crate::ids::{FactId, UserId};
use crate::store::PgAiStore;
use crate::validate;

pub const MAX_FACT_KEY_CHARS: usize = 256;
pub const MAX_CATEGORY_CHARS: usize = 64;
/// Most facts one search or listing returns.
pub const MAX_FACTS: u32 = 1_000;

/// One observation of a fact.
#[derive(Debug, Clone)]
pub struct Observation {
    pub key: String,
    pub content: String,
    pub category: Option<String>,
    /// How sure the observer is, 0 to 1.
    pub confidence: f32,
    /// Where it was learnt ("conversation", "profile", ...).
    pub source: String,
    /// A JSON object; `Null` stands for `{}`.
    pub metadata: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Observation {
    pub fn new(key: impl Into<String>, content: impl Into<String>, confidence: f32) -> Self {
        Self {
            key: key.into(),
            content: content.into(),
            category: None,
            confidence,
            source: "conversation".into(),
            metadata: serde_json::Value::Null,
            expires_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Fact))]
pub struct MemoryFact {
    pub id: FactId,
    pub user_id: UserId,
    pub key: String,
    pub content: String,
    pub category: Option<String>,
    pub confidence: f32,
    pub observation_count: i32,
    pub source: String,
    pub metadata: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A fact as one observation left it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactVersion {
    /// The fact's observation count after this observation.
    pub version: i32,
    pub content: String,
    pub category: Option<String>,
    pub confidence: f32,
    pub source: String,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A full-text search over a user's live facts.
#[derive(Debug, Clone)]
pub struct FactSearch {
    /// Words to look for, in web-search syntax: `coffee -decaf "oat milk" or tea`.
    pub text: String,
    /// Only facts of this category.
    pub category: Option<String>,
    /// Only facts whose metadata contains this JSON object (`@>`).
    pub metadata: Option<serde_json::Value>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FoundFact {
    pub fact: MemoryFact,
    /// Higher is more relevant (PostgreSQL's `ts_rank_cd`).
    pub rank: f32,
}

/// What the assistant remembers about each user.
#[async_trait]
pub trait Memory: Send + Sync {
    /// Records an observation of a fact; returns the fact as it now stands.
    async fn remember(&self, user: UserId, observation: Observation)
    -> Result<MemoryFact, AiError>;

    /// The live fact with this key.
    async fn fact(&self, user: UserId, key: &str) -> Result<Option<MemoryFact>, AiError>;

    /// Every observation of the fact, oldest first (empty when there is no such fact).
    async fn fact_history(&self, user: UserId, key: &str) -> Result<Vec<FactVersion>, AiError>;

    /// Live facts, most recently updated first, optionally of one category.
    async fn facts(
        &self,
        user: UserId,
        category: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemoryFact>, AiError>;

    /// Live facts matching the search, most relevant first.
    async fn search_facts(
        &self,
        user: UserId,
        search: &FactSearch,
    ) -> Result<Vec<FoundFact>, AiError>;

    /// Removes the fact and its history; tells whether there was one.
    async fn forget_fact(&self, user: UserId, key: &str) -> Result<bool, AiError>;
}

#[derive(sqlx::FromRow)]
struct FactRow {
    id: FactId,
    user_id: UserId,
    fact_key: String,
    content: String,
    category: Option<String>,
    confidence: f32,
    observation_count: i32,
    source: String,
    metadata: Json<serde_json::Value>,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<FactRow> for MemoryFact {
    fn from(row: FactRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            key: row.fact_key,
            content: row.content,
            category: row.category,
            confidence: row.confidence,
            observation_count: row.observation_count,
            source: row.source,
            metadata: row.metadata.0,
            expires_at: row.expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct FoundRow {
    #[sqlx(flatten)]
    fact: FactRow,
    rank: f32,
}

/// The columns of [`FactRow`] of facts `f`, for `concat!`.
macro_rules! fact_columns {
    () => {
        "f.id, f.user_id, f.fact_key, f.content, f.category, f.confidence, f.observation_count,
         f.source, f.metadata, f.expires_at, f.created_at, f.updated_at"
    };
}

/// A fact of `f` that has not expired.
macro_rules! live {
    () => {
        "(f.expires_at IS NULL OR f.expires_at > now())"
    };
}

fn check_key(key: &str) -> Result<(), AiError> {
    validate::text("key", key, MAX_FACT_KEY_CHARS, false)
}

fn check_limit(limit: u32) -> Result<i64, AiError> {
    if limit == 0 || limit > MAX_FACTS {
        return Err(AiError::InvalidField {
            field: "limit",
            reason: format!("must be 1 to {MAX_FACTS}, got {limit}"),
        });
    }
    Ok(i64::from(limit))
}

fn check_observation(observation: &Observation) -> Result<serde_json::Value, AiError> {
    check_key(&observation.key)?;
    validate::content("content", &observation.content)?;
    if let Some(category) = &observation.category {
        validate::text("category", category, MAX_CATEGORY_CHARS, false)?;
    }
    validate::text("source", &observation.source, 64, false)?;
    if !(0.0..=1.0).contains(&observation.confidence) {
        return Err(AiError::InvalidField {
            field: "confidence",
            reason: format!("must be within 0 and 1, got {}", observation.confidence),
        });
    }
    let metadata = if observation.metadata.is_null() {
        serde_json::json!({})
    } else {
        observation.metadata.clone()
    };
    validate::metadata("metadata", &metadata)?;
    Ok(metadata)
}

#[async_trait]
impl Memory for PgAiStore {
    async fn remember(
        &self,
        user: UserId,
        observation: Observation,
    ) -> Result<MemoryFact, AiError> {
        let metadata = check_observation(&observation)?;
        let (observation, metadata, id) = (&observation, &metadata, FactId::new());
        let row: FactRow = on_connection!(self, |connection| async {
            sqlx::query_as(concat!(
                "INSERT INTO ai.memory_facts AS f
                        (id, user_id, fact_key, content, category, confidence, source, metadata, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (user_id, fact_key) DO UPDATE
                    SET content = EXCLUDED.content,
                        category = coalesce(EXCLUDED.category, f.category),
                        confidence = CASE WHEN ",
                live!(),
                " THEN 1 - (1 - f.confidence) * (1 - EXCLUDED.confidence)
                                          ELSE EXCLUDED.confidence END,
                        observation_count = f.observation_count + 1,
                        source = EXCLUDED.source,
                        metadata = CASE WHEN ",
                live!(),
                " THEN f.metadata || EXCLUDED.metadata ELSE EXCLUDED.metadata END,
                        expires_at = EXCLUDED.expires_at
                 RETURNING ",
                fact_columns!()
            ))
            .bind(id)
            .bind(user)
            .bind(&observation.key)
            .bind(&observation.content)
            .bind(&observation.category)
            .bind(observation.confidence)
            .bind(&observation.source)
            .bind(Json(metadata))
            .bind(observation.expires_at)
            .fetch_one(connection)
            .await
            .map_err(|error| AiError::or_unknown_user(error, user))
        })?;
        Ok(row.into())
    }

    async fn fact(&self, user: UserId, key: &str) -> Result<Option<MemoryFact>, AiError> {
        check_key(key)?;
        let row: Option<FactRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                fact_columns!(),
                " FROM ai.memory_facts f WHERE f.user_id = $1 AND f.fact_key = $2 AND ",
                live!()
            ))
            .bind(user)
            .bind(key)
            .fetch_optional(connection)
            .await?)
        })?;
        Ok(row.map(MemoryFact::from))
    }

    async fn fact_history(&self, user: UserId, key: &str) -> Result<Vec<FactVersion>, AiError> {
        check_key(key)?;
        type VersionRow = (
            i32,
            String,
            Option<String>,
            f32,
            String,
            Json<serde_json::Value>,
            DateTime<Utc>,
        );
        let rows: Vec<VersionRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(
                "SELECT h.version, h.content, h.category, h.confidence, h.source, h.metadata, h.recorded_at
                   FROM ai.memory_facts f
                   JOIN ai.memory_fact_history h ON h.fact_id = f.id
                  WHERE f.user_id = $1 AND f.fact_key = $2
                  ORDER BY h.version",
            )
            .bind(user)
            .bind(key)
            .fetch_all(connection)
            .await?)
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(version, content, category, confidence, source, metadata, recorded_at)| {
                    FactVersion {
                        version,
                        content,
                        category,
                        confidence,
                        source,
                        metadata: metadata.0,
                        recorded_at,
                    }
                },
            )
            .collect())
    }

    async fn facts(
        &self,
        user: UserId,
        category: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MemoryFact>, AiError> {
        let limit = check_limit(limit)?;
        if let Some(category) = category {
            validate::text("category", category, MAX_CATEGORY_CHARS, false)?;
        }
        let rows: Vec<FactRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                fact_columns!(),
                " FROM ai.memory_facts f
                  WHERE f.user_id = $1 AND ($2::text IS NULL OR f.category = $2) AND ",
                live!(),
                " ORDER BY f.updated_at DESC, f.id DESC LIMIT $3"
            ))
            .bind(user)
            .bind(category)
            .bind(limit)
            .fetch_all(connection)
            .await?)
        })?;
        Ok(rows.into_iter().map(MemoryFact::from).collect())
    }

    async fn search_facts(
        &self,
        user: UserId,
        search: &FactSearch,
    ) -> Result<Vec<FoundFact>, AiError> {
        validate::text("text", &search.text, 1_000, false)?;
        if search.text.trim().is_empty() {
            return Err(AiError::InvalidField {
                field: "text",
                reason: "must contain a word".into(),
            });
        }
        if let Some(category) = &search.category {
            validate::text("category", category, MAX_CATEGORY_CHARS, false)?;
        }
        if let Some(metadata) = &search.metadata {
            validate::metadata("metadata", metadata)?;
        }
        let limit = check_limit(search.limit)?;
        let metadata = search.metadata.as_ref().map(Json);
        let rows: Vec<FoundRow> = on_connection!(self, |connection| async {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                fact_columns!(),
                ", ts_rank_cd(f.search, q) AS rank
                   FROM ai.memory_facts f, websearch_to_tsquery('simple', $2) AS q
                  WHERE f.user_id = $1 AND f.search @@ q
                    AND ($3::text IS NULL OR f.category = $3)
                    AND ($4::jsonb IS NULL OR f.metadata @> $4) AND ",
                live!(),
                " ORDER BY rank DESC, f.updated_at DESC, f.id
                  LIMIT $5"
            ))
            .bind(user)
            .bind(&search.text)
            .bind(&search.category)
            .bind(metadata)
            .bind(limit)
            .fetch_all(connection)
            .await?)
        })?;
        Ok(rows
            .into_iter()
            .map(|row| FoundFact {
                fact: row.fact.into(),
                rank: row.rank,
            })
            .collect())
    }

    async fn forget_fact(&self, user: UserId, key: &str) -> Result<bool, AiError> {
        check_key(key)?;
        let removed = on_connection!(self, |connection| async {
            Ok(
                sqlx::query("DELETE FROM ai.memory_facts WHERE user_id = $1 AND fact_key = $2")
                    .bind(user)
                    .bind(key)
                    .execute(connection)
                    .await?
                    .rows_affected(),
            )
        })?;
        Ok(removed > 0)
    }
}
