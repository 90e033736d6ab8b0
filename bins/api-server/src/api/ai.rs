//! `/api/v1/ai/users/{user}/...`: the AI store of one user (cache, conversations and
//! messages, memory facts, learning examples, forgetting) and `/api/v1/ai/examples/export`,
//! the training export as an NDJSON stream.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use ai_store::{
    AiError, ConversationId, Conversations, ExportScope, FactSearch, LearningLog, Memory,
    NewConversation, NewExample, NewMessage, Observation, PersonalData, PgAiStore, ResponseCache,
    Ttl, UserId, Window,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admission::Caller;
use crate::api::body::Body;
use crate::api::cache_reads::CacheReads;
use crate::error::{ApiError, ApiResult};

/// Messages a window holds when the query gives neither bound.
const DEFAULT_WINDOW: u32 = 20;

/// The AI store as the routes hold it: one handle per concern, each behind its trait, so a
/// route sees only the concern it serves and any implementation of it can stand behind.
#[derive(Clone)]
pub struct AiServices {
    cache: web::Data<dyn ResponseCache>,
    conversations: web::Data<dyn Conversations>,
    memory: web::Data<dyn Memory>,
    learning: web::Data<dyn LearningLog>,
    personal_data: web::Data<dyn PersonalData>,
}

impl AiServices {
    /// Every concern served by the PostgreSQL store.
    pub fn on(store: &PgAiStore) -> Self {
        let shared = Arc::new(store.clone());
        Self {
            cache: web::Data::from(Arc::new(store.cache().clone()) as Arc<dyn ResponseCache>),
            conversations: web::Data::from(shared.clone() as Arc<dyn Conversations>),
            memory: web::Data::from(shared.clone() as Arc<dyn Memory>),
            learning: web::Data::from(shared.clone() as Arc<dyn LearningLog>),
            personal_data: web::Data::from(shared as Arc<dyn PersonalData>),
        }
    }
}

/// The routes and what they hold. Runs once per worker: each worker gathers its own cache
/// reads ([`CacheReads`]).
pub fn configure(config: &mut web::ServiceConfig, services: &AiServices) {
    config
        .app_data(services.cache.clone())
        .app_data(services.conversations.clone())
        .app_data(services.memory.clone())
        .app_data(services.learning.clone())
        .app_data(services.personal_data.clone())
        .app_data(web::Data::new(CacheReads::new(
            services.cache.clone().into_inner(),
        )));
    // One scope per family: the router compares the prefix once instead of matching every
    // route's pattern of every family.
    config.service(
        web::scope("/api/v1/ai")
            .route("/users/{user}/cache/{key}", web::get().to(cache_get))
            .route("/users/{user}/cache/{key}", web::put().to(cache_put))
            .route("/users/{user}/cache/{key}", web::delete().to(cache_delete))
            .route(
                "/users/{user}/conversations",
                web::post().to(create_conversation),
            )
            .route(
                "/users/{user}/conversations",
                web::get().to(list_conversations),
            )
            .route(
                "/users/{user}/conversations/{id}",
                web::get().to(conversation),
            )
            .route(
                "/users/{user}/conversations/{id}",
                web::delete().to(delete_conversation),
            )
            .route(
                "/users/{user}/conversations/{id}/messages",
                web::post().to(append),
            )
            .route(
                "/users/{user}/conversations/{id}/messages",
                web::get().to(messages),
            )
            .route(
                "/users/{user}/conversations/{id}/window",
                web::get().to(window),
            )
            .route("/users/{user}/facts", web::get().to(facts))
            .route("/users/{user}/facts/search", web::get().to(search_facts))
            .route("/users/{user}/facts/{key}", web::put().to(remember))
            .route("/users/{user}/facts/{key}", web::get().to(fact))
            .route("/users/{user}/examples", web::post().to(record_example))
            .route("/users/{user}", web::delete().to(forget_user))
            .route("/examples/export", web::get().to(export))
            .default_service(web::to(crate::api::not_found)),
    );
}

fn user(path: Uuid) -> UserId {
    UserId(path)
}

// --- cache ---------------------------------------------------------------------------------

/// A live cache entry
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/cache/{key}", tag = "ai", params(("user" = Uuid, Path), ("key" = String, Path, min_length = 1, max_length = 512)),
    responses((status = 200, body = ai_store::CachedValue)))]
pub async fn cache_get(
    _: Caller,
    reads: web::Data<CacheReads>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult {
    let (owner, key) = path.into_inner();
    match reads.get(user(owner), key).await? {
        Some(value) => Ok(HttpResponse::Ok().json(value)),
        None => Err(ApiError::cache_miss()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CachePut {
    value: serde_json::Value,
    /// Lifetime in seconds, at most 366 days; absent: the default. With `sliding`, renewed by
    /// each hit.
    #[schema(minimum = 1, maximum = 31_622_400)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    sliding: bool,
    /// Never expires (no `ttl_seconds` then).
    #[serde(default)]
    forever: bool,
}

/// Store a cache entry
#[utoipa::path(put, path = "/api/v1/ai/users/{user}/cache/{key}", tag = "ai", request_body = CachePut, params(("user" = Uuid, Path), ("key" = String, Path, min_length = 1, max_length = 512)),
    responses((status = 204)))]
pub async fn cache_put(
    _: Caller,
    cache: web::Data<dyn ResponseCache>,
    path: web::Path<(Uuid, String)>,
    Body(body): Body<CachePut>,
) -> ApiResult {
    let (owner, key) = path.into_inner();
    let ttl = Ttl::from_seconds(body.ttl_seconds, body.sliding, body.forever)?;
    cache.set(user(owner), &key, &body.value, ttl).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a cache entry
#[utoipa::path(delete, path = "/api/v1/ai/users/{user}/cache/{key}", tag = "ai", params(("user" = Uuid, Path), ("key" = String, Path, min_length = 1, max_length = 512)),
    responses((status = 204)))]
pub async fn cache_delete(
    _: Caller,
    cache: web::Data<dyn ResponseCache>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult {
    let (owner, key) = path.into_inner();
    if cache.delete(user(owner), &key).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::cache_miss())
    }
}

/// A fact and its observations, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FactWithHistory {
    fact: ai_store::MemoryFact,
    history: Vec<ai_store::FactVersion>,
}

// --- conversations -------------------------------------------------------------------------

/// Start a conversation
#[utoipa::path(post, path = "/api/v1/ai/users/{user}/conversations", tag = "ai", request_body = NewConversation, params(("user" = Uuid, Path)),
    responses((status = 201, body = ai_store::Conversation)))]
pub async fn create_conversation(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    owner: web::Path<Uuid>,
    Body(conversation): Body<NewConversation>,
) -> ApiResult {
    let conversation = conversations
        .create_conversation(user(*owner), conversation)
        .await?;
    Ok(HttpResponse::Created().json(conversation))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The last conversation of the previous page.
    after: Option<Uuid>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A user's conversations, most recently active first
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/conversations", tag = "ai", params(("user" = Uuid, Path), ListQuery),
    responses((status = 200, body = Vec<ai_store::Conversation>)))]
pub async fn list_conversations(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    owner: web::Path<Uuid>,
    query: web::Query<ListQuery>,
) -> ApiResult {
    let owner = user(*owner);
    let after = match query.after {
        Some(id) => Some(
            conversations
                .conversation(owner, ConversationId(id))
                .await?,
        ),
        None => None,
    };
    let page = conversations
        .list_conversations(owner, after.as_ref(), query.limit.unwrap_or(50))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// A conversation
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/conversations/{id}", tag = "ai", params(("user" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = ai_store::Conversation)))]
pub async fn conversation(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult {
    let (owner, id) = path.into_inner();
    let conversation = conversations
        .conversation(user(owner), ConversationId(id))
        .await?;
    Ok(HttpResponse::Ok().json(conversation))
}

/// Delete a conversation (purged after the grace period)
#[utoipa::path(delete, path = "/api/v1/ai/users/{user}/conversations/{id}", tag = "ai", params(("user" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 204)))]
pub async fn delete_conversation(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult {
    let (owner, id) = path.into_inner();
    conversations
        .delete_conversation(user(owner), ConversationId(id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Append a message
#[utoipa::path(post, path = "/api/v1/ai/users/{user}/conversations/{id}/messages", tag = "ai", request_body = NewMessage, params(("user" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 201, body = ai_store::Message)))]
pub async fn append(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    path: web::Path<(Uuid, Uuid)>,
    Body(message): Body<NewMessage>,
) -> ApiResult {
    let (owner, id) = path.into_inner();
    let message = conversations
        .append_message(user(owner), ConversationId(id), message)
        .await?;
    Ok(HttpResponse::Created().json(message))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// The last `seq` of the previous page (0 for the first).
    after_seq: Option<i32>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A page of messages in order
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/conversations/{id}/messages", tag = "ai", params(("user" = Uuid, Path), ("id" = Uuid, Path), MessagesQuery),
    responses((status = 200, body = MessagePage)))]
pub async fn messages(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<MessagesQuery>,
) -> ApiResult {
    let (owner, id) = path.into_inner();
    let messages = conversations
        .messages(
            user(owner),
            ConversationId(id),
            query.after_seq.unwrap_or(0),
            query.limit.unwrap_or(100),
        )
        .await?;
    let next_after_seq = messages.last().map(|message| message.seq);
    Ok(HttpResponse::Ok().json(MessagePage {
        messages,
        next_after_seq,
    }))
}

/// A page of messages, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    messages: Vec<ai_store::Message>,
    /// Pass as `after_seq` for the next page; null after the last.
    next_after_seq: Option<i32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// The last N messages (20 when neither bound is given).
    #[param(minimum = 1, maximum = 1000)]
    last: Option<u32>,
    /// As many recent messages as fit this many tokens; with `last`, both bounds hold.
    tokens: Option<u32>,
}

/// The most recent messages that fit a count or a token budget
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/conversations/{id}/window", tag = "ai", params(("user" = Uuid, Path), ("id" = Uuid, Path), WindowQuery),
    responses((status = 200, body = Vec<ai_store::Message>)))]
pub async fn window(
    _: Caller,
    conversations: web::Data<dyn Conversations>,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<WindowQuery>,
) -> ApiResult {
    let (owner, id) = path.into_inner();
    let (owner, id) = (user(owner), ConversationId(id));
    let messages = match (query.last, query.tokens) {
        (last, None) => {
            let last = Window::LastMessages(last.unwrap_or(DEFAULT_WINDOW));
            conversations.window(owner, id, last).await?
        }
        (last, Some(tokens)) => {
            let mut fitting = conversations
                .window(owner, id, Window::TokenBudget(tokens))
                .await?;
            // Both bounds: the newest `last` of those that fit the budget.
            let keep = last.map_or(fitting.len(), |last| last as usize);
            fitting.split_off(fitting.len().saturating_sub(keep))
        }
    };
    Ok(HttpResponse::Ok().json(messages))
}

// --- memory facts --------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactBody {
    content: String,
    #[schema(min_length = 1, max_length = 64)]
    category: Option<String>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    confidence: f32,
    /// Who observed it; `user` when absent.
    #[schema(min_length = 1, max_length = 64)]
    source: Option<String>,
    /// A JSON object; absent or null: `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: serde_json::Value,
    expires_at: Option<DateTime<Utc>>,
}

/// Record an observation of a fact
#[utoipa::path(put, path = "/api/v1/ai/users/{user}/facts/{key}", tag = "ai", request_body = FactBody, params(("user" = Uuid, Path), ("key" = String, Path, min_length = 1, max_length = 256)),
    responses((status = 200, body = ai_store::MemoryFact)))]
pub async fn remember(
    _: Caller,
    memory: web::Data<dyn Memory>,
    path: web::Path<(Uuid, String)>,
    Body(body): Body<FactBody>,
) -> ApiResult {
    let (owner, key) = path.into_inner();
    let mut observation = Observation::new(key, body.content, body.confidence);
    observation.category = body.category;
    if let Some(source) = body.source {
        observation.source = source;
    }
    observation.metadata = body.metadata;
    observation.expires_at = body.expires_at;
    let fact = memory.remember(user(owner), observation).await?;
    Ok(HttpResponse::Ok().json(fact))
}

/// A fact and its history
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/facts/{key}", tag = "ai", params(("user" = Uuid, Path), ("key" = String, Path, min_length = 1, max_length = 256)),
    responses((status = 200, body = FactWithHistory)))]
pub async fn fact(
    _: Caller,
    memory: web::Data<dyn Memory>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult {
    let (owner, key) = path.into_inner();
    let owner = user(owner);
    match memory.fact(owner, &key).await? {
        Some(fact) => {
            let history = memory.fact_history(owner, &key).await?;
            Ok(HttpResponse::Ok().json(FactWithHistory { fact, history }))
        }
        None => Err(ApiError::fact_not_found()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FactsQuery {
    #[param(min_length = 1, max_length = 64)]
    category: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Live facts, most recently updated first
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/facts", tag = "ai", params(("user" = Uuid, Path), FactsQuery),
    responses((status = 200, body = Vec<ai_store::MemoryFact>)))]
pub async fn facts(
    _: Caller,
    memory: web::Data<dyn Memory>,
    owner: web::Path<Uuid>,
    query: web::Query<FactsQuery>,
) -> ApiResult {
    let facts = memory
        .facts(
            user(*owner),
            query.category.as_deref(),
            query.limit.unwrap_or(100),
        )
        .await?;
    Ok(HttpResponse::Ok().json(facts))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    #[param(min_length = 1, max_length = 1000)]
    q: String,
    #[param(min_length = 1, max_length = 64)]
    category: Option<String>,
    /// A JSON object the facts' metadata must contain.
    metadata: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Full-text search over the user's facts, most relevant first
#[utoipa::path(get, path = "/api/v1/ai/users/{user}/facts/search", tag = "ai", params(("user" = Uuid, Path), SearchQuery),
    responses((status = 200, body = Vec<ai_store::FoundFact>)))]
pub async fn search_facts(
    _: Caller,
    memory: web::Data<dyn Memory>,
    owner: web::Path<Uuid>,
    query: web::Query<SearchQuery>,
) -> ApiResult {
    let metadata = match &query.metadata {
        Some(text) => Some(serde_json::from_str(text).map_err(|error| {
            ApiError::from(AiError::InvalidField {
                field: "metadata",
                reason: format!("not JSON: {error}"),
            })
        })?),
        None => None,
    };
    let search = FactSearch {
        text: query.q.clone(),
        category: query.category.clone(),
        metadata,
        limit: query.limit.unwrap_or(20),
    };
    let found = memory.search_facts(user(*owner), &search).await?;
    Ok(HttpResponse::Ok().json(found))
}

// --- learning data -------------------------------------------------------------------------

/// Record a learning example, once per idempotency key
#[utoipa::path(post, path = "/api/v1/ai/users/{user}/examples", tag = "ai", request_body = NewExample, params(("user" = Uuid, Path)),
    responses((status = 201, body = ai_store::Recorded), (status = 200, body = ai_store::Recorded), (status = 409, body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn record_example(
    _: Caller,
    learning: web::Data<dyn LearningLog>,
    owner: web::Path<Uuid>,
    Body(example): Body<NewExample>,
) -> ApiResult {
    let recorded = learning.record_example(user(*owner), example).await?;
    let status = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(recorded))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    user: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// Streams the examples as JSON lines while they are read from the database's cursor: the
/// server holds one chunk at a time whatever the export's size. Every user's data: admin only.
/// Learning examples as JSON lines, streamed (admin)
#[utoipa::path(get, path = "/api/v1/ai/examples/export", tag = "ai", params(ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String)))]
pub async fn export(
    _: Caller,
    learning: web::Data<dyn LearningLog>,
    query: web::Query<ExportQuery>,
) -> HttpResponse {
    let scope = ExportScope {
        user: query.user.map(UserId),
        since: query.since,
        until: query.until,
    };
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    let learning = learning.into_inner();
    tokio::spawn(async move {
        let mut writer = writer;
        if let Err(error) = learning.export_jsonl(&scope, &mut writer).await {
            // The status line is gone already; the truncated stream ends the response.
            tracing::warn!(%error, "the learning-data export stopped");
        }
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(tokio_util::io::ReaderStream::new(reader))
}

// --- forgetting ----------------------------------------------------------------------------

/// Forget everything of a user in the AI store
#[utoipa::path(delete, path = "/api/v1/ai/users/{user}", tag = "ai", params(("user" = Uuid, Path)),
    responses((status = 200, body = ai_store::ForgetReport)))]
pub async fn forget_user(
    _: Caller,
    personal_data: web::Data<dyn PersonalData>,
    owner: web::Path<Uuid>,
) -> ApiResult {
    let report = personal_data.forget_user(user(*owner)).await?;
    Ok(HttpResponse::Ok().json(report))
}
