//! Learning examples (a prompt, the response, the user's feedback) in `ai.learning_data`, and
//! their export as JSON lines for training.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::AiError;
use crate::ids::{ExampleId, UserId};
use crate::store::PgAiStore;
use crate::validate;

pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
/// Rows the export fetches from its cursor at a time: what it holds in memory at most.
pub const EXPORT_CHUNK: i64 = 1_000;

/// What the user thought of the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ExampleFeedback))]
#[serde(
    rename_all = "snake_case",
    tag = "kind",
    content = "text",
    deny_unknown_fields
)]
pub enum Feedback {
    Positive,
    Negative,
    Neutral,
    /// The response the user says would have been right.
    Correction(String),
}

impl Feedback {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::Neutral => "neutral",
            Self::Correction(_) => "correction",
        }
    }

    fn correction(&self) -> Option<&str> {
        match self {
            Self::Correction(text) => Some(text),
            _ => None,
        }
    }

    fn from_columns(feedback: &str, correction: Option<String>) -> Result<Self, AiError> {
        Ok(match (feedback, correction) {
            ("positive", None) => Self::Positive,
            ("negative", None) => Self::Negative,
            ("neutral", None) => Self::Neutral,
            ("correction", Some(text)) => Self::Correction(text),
            (other, _) => {
                return Err(AiError::UnexpectedData(format!(
                    "unexpected feedback {other:?}"
                )));
            }
        })
    }
}

/// An example to record (deserialises from a request body).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewExample {
    /// Chosen by the recorder (1 to 200 characters): recording the same example again stores
    /// it once.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub idempotency_key: String,
    pub prompt: String,
    pub response: String,
    pub feedback: Feedback,
    /// A JSON object; absent or null stands for `{}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Example {
    pub id: ExampleId,
    pub user_id: UserId,
    pub idempotency_key: String,
    pub prompt: String,
    pub response: String,
    pub feedback: Feedback,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// An example and whether this call stored it (false: it was recorded before).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RecordedExample))]
pub struct Recorded {
    pub example: Example,
    pub created: bool,
}

/// Which examples an export covers, in creation order.
#[derive(Debug, Clone, Default)]
pub struct ExportScope {
    /// One user's examples; `None`: every user's (a training export, not a user-facing read).
    pub user: Option<UserId>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// Examples users gave feedback on, for training.
#[async_trait]
pub trait LearningLog: Send + Sync {
    /// Stores the example once per `(user, idempotency key)`. The same example again returns
    /// the stored one; other content under the same key is [`AiError::ExampleConflict`].
    async fn record_example(&self, user: UserId, example: NewExample) -> Result<Recorded, AiError>;

    /// Writes the examples in scope to `out` as JSON lines, oldest first, reading them
    /// through a cursor [`EXPORT_CHUNK`] rows at a time (memory stays constant whatever the
    /// count); returns how many it wrote. One line:
    /// `{"id":..,"user_id":..,"idempotency_key":..,"prompt":..,"response":..,
    /// "feedback":"correction","correction":..,"metadata":{..},"created_at":..}`.
    async fn export_jsonl(
        &self,
        scope: &ExportScope,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64, AiError>;
}

#[derive(sqlx::FromRow)]
struct ExampleRow {
    id: ExampleId,
    user_id: UserId,
    idempotency_key: String,
    prompt: String,
    response: String,
    feedback: String,
    correction: Option<String>,
    metadata: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ExampleRow> for Example {
    type Error = AiError;

    fn try_from(row: ExampleRow) -> Result<Self, AiError> {
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            idempotency_key: row.idempotency_key,
            prompt: row.prompt,
            response: row.response,
            feedback: Feedback::from_columns(&row.feedback, row.correction)?,
            metadata: row.metadata.0,
            created_at: row.created_at,
        })
    }
}

fn check_example(example: &NewExample) -> Result<serde_json::Value, AiError> {
    validate::text(
        "idempotency_key",
        &example.idempotency_key,
        MAX_IDEMPOTENCY_KEY_CHARS,
        false,
    )?;
    validate::content("prompt", &example.prompt)?;
    validate::content("response", &example.response)?;
    if let Some(correction) = example.feedback.correction() {
        validate::content("correction", correction)?;
    }
    let metadata = if example.metadata.is_null() {
        serde_json::json!({})
    } else {
        example.metadata.clone()
    };
    validate::metadata("metadata", &metadata)?;
    Ok(metadata)
}

/// Writes the scope's examples from `connection`, which holds no transaction yet.
async fn export_on(
    transaction: &mut PgConnection,
    scope: &ExportScope,
    out: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64, AiError> {
    // `transaction` has just begun (a cursor lives in a transaction): read only, and at one
    // snapshot, so the export is consistent however long it takes. Not a savepoint of its
    // own, where the isolation level can no longer be set.
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "DECLARE learning_export NO SCROLL CURSOR FOR
         SELECT json_build_object(
                    'id', l.id, 'user_id', l.user_id, 'idempotency_key', l.idempotency_key,
                    'prompt', l.prompt, 'response', l.response, 'feedback', l.feedback,
                    'correction', l.correction, 'metadata', l.metadata, 'created_at', l.created_at)::text
           FROM ai.learning_data l
          WHERE ($1::uuid IS NULL OR l.user_id = $1)
            AND ($2::timestamptz IS NULL OR l.created_at >= $2)
            AND ($3::timestamptz IS NULL OR l.created_at < $3)
          ORDER BY l.created_at, l.id",
    )
    .bind(scope.user)
    .bind(scope.since)
    .bind(scope.until)
    .execute(&mut *transaction)
    .await?;
    let fetch = format!("FETCH FORWARD {EXPORT_CHUNK} FROM learning_export");
    let mut written = 0_u64;
    loop {
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(fetch.as_str()))
            .fetch_all(&mut *transaction)
            .await?;
        for line in &lines {
            out.write_all(line.as_bytes())
                .await
                .map_err(AiError::Export)?;
            out.write_all(b"\n").await.map_err(AiError::Export)?;
        }
        written += lines.len() as u64;
        if (lines.len() as i64) < EXPORT_CHUNK {
            break;
        }
    }
    out.flush().await.map_err(AiError::Export)?;
    Ok(written)
}

#[async_trait]
impl LearningLog for PgAiStore {
    async fn record_example(&self, user: UserId, example: NewExample) -> Result<Recorded, AiError> {
        let metadata = check_example(&example)?;
        let (example, metadata, id) = (&example, &metadata, ExampleId::new());
        // Inserted, or else the stored row. A concurrent recorder of the same key makes the
        // INSERT wait for its commit and do nothing; the SELECT, a statement with a snapshot
        // of its own, then sees that row.
        let (row, created): (ExampleRow, bool) = on_connection!(self, |connection| async {
            let inserted: Option<ExampleRow> = sqlx::query_as(
                "INSERT INTO ai.learning_data
                        (id, user_id, idempotency_key, prompt, response, feedback, correction, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (user_id, idempotency_key) DO NOTHING
                 RETURNING id, user_id, idempotency_key, prompt, response, feedback, correction, metadata, created_at",
            )
            .bind(id)
            .bind(user)
            .bind(&example.idempotency_key)
            .bind(&example.prompt)
            .bind(&example.response)
            .bind(example.feedback.as_str())
            .bind(example.feedback.correction())
            .bind(Json(metadata))
            .fetch_optional(&mut *connection)
            .await
            .map_err(|error| AiError::or_unknown_user(error, user))?;
            if let Some(row) = inserted {
                return Ok((row, true));
            }
            let stored: ExampleRow = sqlx::query_as(
                "SELECT id, user_id, idempotency_key, prompt, response, feedback, correction, metadata, created_at
                   FROM ai.learning_data WHERE user_id = $1 AND idempotency_key = $2",
            )
            .bind(user)
            .bind(&example.idempotency_key)
            .fetch_one(&mut *connection)
            .await?;
            Ok::<_, AiError>((stored, false))
        })?;
        let stored = Example::try_from(row)?;
        if !created
            && (stored.prompt != example.prompt
                || stored.response != example.response
                || stored.feedback != example.feedback
                || &stored.metadata != metadata)
        {
            return Err(AiError::ExampleConflict {
                key: example.idempotency_key.clone(),
            });
        }
        Ok(Recorded {
            example: stored,
            created,
        })
    }

    async fn export_jsonl(
        &self,
        scope: &ExportScope,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64, AiError> {
        // Not retried: lines written before a failure cannot be taken back.
        let mut transaction = self.db.begin().await?;
        let exported = export_on(&mut transaction, scope, out).await?;
        transaction.commit().await?;
        Ok(exported)
    }
}
