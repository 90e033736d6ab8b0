//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api-docs/openapi.json`; `/docs` renders it with the vendored Swagger UI.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The error body of every route.
pub use http_problem::Problem as ProblemDocument;

/// Shapes of the ledger's and the AI store's answers, for the document only (the handlers
/// serialise the crates' own types, which know nothing of OpenAPI; tests compare served
/// answers with these field for field, and schemathesis checks the types in CI).
pub mod schemas {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    /// A transfer's place in the ledger's order.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Position {
        pub tx_id: i64,
        pub seq: i64,
    }

    /// A stored transfer; amounts in units (10^-9 FODI).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Transfer {
        pub id: Uuid,
        pub position: Position,
        /// `transfer`, `pending`, `post`, `void` or `expire`.
        pub kind: String,
        pub debit_wallet: Uuid,
        pub credit_wallet: Uuid,
        pub amount: i64,
        pub pending_id: Option<Uuid>,
        pub expires_at: Option<DateTime<Utc>>,
        pub reason: Option<String>,
        pub reference: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub metadata: Option<serde_json::Value>,
        pub created_at: DateTime<Utc>,
    }

    /// A submitted transfer, and whether this submission replayed an earlier one.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Applied {
        pub transfer: Transfer,
        pub replayed: bool,
    }

    /// A wallet with its balances in units.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Wallet {
        pub id: Uuid,
        /// `{"type": "user", "id": <uuid>}` or `{"type": "system", "id": "issuer" | ...}`.
        #[schema(value_type = Object)]
        pub owner: serde_json::Value,
        pub asset: String,
        pub shard_count: i16,
        pub posted: i64,
        pub pending_debits: i64,
        pub pending_credits: i64,
        /// Lowest allowed available balance; null: unbounded (system wallets).
        pub min_balance: Option<i64>,
        pub closed_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        /// Posted minus holds.
        pub available: i64,
        /// What a transfer may take now; null when unbounded.
        pub spendable: Option<i64>,
    }

    /// The process is alive.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Health {
        /// `ok`.
        pub status: String,
    }

    /// Everything the server needs is there.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Ready {
        /// `ready`.
        pub status: String,
        /// `ok`.
        pub database: String,
        /// `current`.
        pub migrations: String,
        /// Each background job's last run, by name.
        pub jobs: std::collections::BTreeMap<String, crate::jobs::JobStatus>,
    }

    /// One line of a wallet's statement.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct StatementEntry {
        pub transfer_id: Uuid,
        pub seq: i64,
        /// `transfer`, `pending`, `post`, `void` or `expire`.
        pub kind: String,
        /// The other wallet of the transfer.
        pub counterparty: Uuid,
        /// The transfer's amount, positive when this wallet is credited.
        pub amount: i64,
        /// Change of the posted balance (zero for holds, voids and expiries).
        pub posted_change: i64,
        /// Posted balance right after this entry.
        pub balance_after: i64,
        pub reason: Option<String>,
        pub reference: Option<String>,
        pub created_at: DateTime<Utc>,
    }

    /// A page of a wallet's history, newest first.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Statement {
        pub wallet: Uuid,
        pub entries: Vec<StatementEntry>,
        /// Pass as `before` for the next (older) page; null on the last page.
        pub next_before: Option<i64>,
    }

    /// A wallet's posted balance at a time.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct BalanceAt {
        pub wallet: Uuid,
        pub at: DateTime<Utc>,
        pub posted: i64,
    }

    /// One item of a batch: `ok` when it applied, else `error`.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct BatchItem {
        pub ok: Option<Applied>,
        pub error: Option<crate::openapi::ProblemDocument>,
    }

    /// A batch's outcome, item by item in the order submitted.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct BatchOutcome {
        /// Items applied.
        pub applied: u64,
        pub results: Vec<BatchItem>,
    }

    /// The first block that does not match, and how (`missing_height`, `broken_link`, ...).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct InvalidBlock {
        pub height: i64,
        pub problem: String,
    }

    /// What re-hashing the chain found.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct ChainCheck {
        pub blocks_checked: i64,
        pub transfers_checked: i64,
        /// Null when the chain is intact.
        pub first_invalid: Option<InvalidBlock>,
    }

    /// The chain's verification.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct ChainVerification {
        pub valid: bool,
        pub verification: ChainCheck,
    }

    /// A non-fungible token; `owner` is null once burned.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Nft {
        pub id: Uuid,
        pub owner: Option<Uuid>,
        pub collection: String,
        pub token_uri: Option<String>,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        pub minted_at: DateTime<Utc>,
        pub burned_at: Option<DateTime<Utc>>,
    }

    /// One recorded movement of a token: a mint has no `from`, a burn no `to`.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct NftMovement {
        pub id: Uuid,
        pub nft: Uuid,
        pub from: Option<Uuid>,
        pub to: Option<Uuid>,
        pub created_at: DateTime<Utc>,
    }

    /// A token and its movements, oldest first.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct NftWithHistory {
        pub nft: Nft,
        pub history: Vec<NftMovement>,
    }

    /// A reward paid from the rewards pool (at most once per user, reason and reference).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Reward {
        /// Also the id of its transfer.
        pub id: Uuid,
        pub user: Uuid,
        pub reason: String,
        pub reference: String,
        /// Units (10^-9 FODI).
        pub amount: i64,
        pub order_id: Option<Uuid>,
        pub created_at: DateTime<Utc>,
        /// This request found the reward already paid and paid nothing.
        pub replayed: bool,
    }

    /// A sealed block of transfers; hashes in hexadecimal.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Block {
        pub height: i64,
        /// Position of the last transfer the block covers.
        pub last_position: Position,
        pub transaction_count: i32,
        pub merkle_root: String,
        pub previous_hash: String,
        pub hash: String,
        pub sealed_at: DateTime<Utc>,
    }

    /// What a recording request left: points or events taken into the buffer, and those
    /// dropped because it was full (the server's overflow policy).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Recorded {
        pub buffered: u64,
        pub dropped: u64,
    }

    /// One time bucket of a metric; an empty bucket has `count` 0 and null aggregates.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct MetricBucket {
        pub start: DateTime<Utc>,
        pub count: i64,
        pub sum: Option<f64>,
        pub avg: Option<f64>,
        pub min: Option<f64>,
        pub max: Option<f64>,
        /// Interpolated percentiles.
        pub p50: Option<f64>,
        pub p95: Option<f64>,
        pub p99: Option<f64>,
    }

    /// Events of one kind on one UTC day (also a row of the daily rollup).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct EventCount {
        pub day: chrono::NaiveDate,
        pub kind: String,
        pub events: i64,
        /// Distinct users among the events that name one.
        pub unique_users: i64,
    }

    /// A fact found by a search.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct FoundFact {
        pub fact: Fact,
        /// Higher is more relevant.
        pub rank: f32,
    }

    /// What the user thought of a response: `kind` is `positive`, `negative`, `neutral` or
    /// `correction`, the last with the right response as `text`.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct ExampleFeedback {
        pub kind: String,
        pub text: Option<String>,
    }

    /// A learning example.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Example {
        pub id: Uuid,
        pub user_id: Uuid,
        pub idempotency_key: String,
        pub prompt: String,
        pub response: String,
        pub feedback: ExampleFeedback,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        pub created_at: DateTime<Utc>,
    }

    /// An example and whether this call stored it (false: it was recorded before).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct RecordedExample {
        pub example: Example,
        pub created: bool,
    }

    /// What forgetting a user removed.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct ForgetReport {
        pub cache_entries: u64,
        pub conversations: u64,
        pub messages: u64,
        pub facts: u64,
        pub fact_versions: u64,
        pub examples: u64,
    }

    /// A duration as serialised: whole seconds and the nanoseconds beyond them.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Duration {
        pub secs: u64,
        pub nanos: u32,
    }

    /// A live cache entry.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct CacheEntry {
        /// The JSON value stored.
        #[schema(value_type = Object)]
        pub value: serde_json::Value,
        /// Null: never expires.
        pub expires_at: Option<DateTime<Utc>>,
        /// Set for sliding entries: each hit moves the expiry to this long after it.
        pub sliding_ttl: Option<Duration>,
        /// Hits so far, including those not yet written.
        pub hit_count: i64,
        pub created_at: DateTime<Utc>,
    }

    /// A conversation of a user.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Conversation {
        pub id: Uuid,
        pub user_id: Uuid,
        pub title: Option<String>,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        /// Messages appended so far (also the `seq` of the last one).
        pub message_count: i32,
        pub last_message_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    /// A message of a conversation.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Message {
        pub conversation_id: Uuid,
        /// 1, 2, ... within the conversation.
        pub seq: i32,
        /// `system`, `user`, `assistant` or `tool`.
        pub role: String,
        pub content: String,
        pub token_count: u32,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        pub created_at: DateTime<Utc>,
    }

    /// A page of messages, oldest first.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct MessagePage {
        pub messages: Vec<Message>,
        /// Pass as `after_seq` for the next page; null after the last.
        pub next_after_seq: Option<i32>,
    }

    /// What is remembered about a user under one key.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct Fact {
        pub id: Uuid,
        pub user_id: Uuid,
        pub key: String,
        pub content: String,
        pub category: Option<String>,
        pub confidence: f32,
        pub observation_count: i32,
        pub source: String,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        pub expires_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    /// A fact as one observation left it.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct FactVersion {
        /// The fact's observation count after this observation.
        pub version: i32,
        pub content: String,
        pub category: Option<String>,
        pub confidence: f32,
        pub source: String,
        #[schema(value_type = Object)]
        pub metadata: serde_json::Value,
        pub recorded_at: DateTime<Utc>,
    }

    /// A fact and its observations, oldest first.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    pub struct FactWithHistory {
        pub fact: Fact,
        pub history: Vec<FactVersion>,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FODI API",
        description = "Users, the AI assistant's store, the FODI token ledger, product analytics and process administration. \
                       Errors are application/problem+json documents with a stable `type`."
    ),
    paths(
        crate::health::health,
        crate::health::ready,
        crate::api::users::create,
        crate::api::users::get,
        crate::api::ledger::open_wallet,
        crate::api::ledger::wallet,
        crate::api::ledger::statement,
        crate::api::ledger::balance_at,
        crate::api::ledger::transfer,
        crate::api::ledger::batch,
        crate::api::ledger::get_transfer,
        crate::api::ledger::post_pending,
        crate::api::ledger::void_pending,
        crate::api::ledger::mint,
        crate::api::ledger::nfts_of,
        crate::api::ledger::nft,
        crate::api::ledger::move_nft,
        crate::api::ledger::burn_nft,
        crate::api::ledger::pay_reward,
        crate::api::ledger::rewards_of,
        crate::api::ledger::blocks,
        crate::api::ledger::verify_blocks,
        crate::api::ai::cache_get,
        crate::api::ai::cache_put,
        crate::api::ai::cache_delete,
        crate::api::ai::create_conversation,
        crate::api::ai::list_conversations,
        crate::api::ai::conversation,
        crate::api::ai::delete_conversation,
        crate::api::ai::append,
        crate::api::ai::messages,
        crate::api::ai::window,
        crate::api::ai::remember,
        crate::api::ai::fact,
        crate::api::ai::facts,
        crate::api::ai::search_facts,
        crate::api::ai::record_example,
        crate::api::ai::export,
        crate::api::ai::forget_user,
        crate::api::analytics::record_metrics,
        crate::api::analytics::record_events,
        crate::api::analytics::buckets,
        crate::api::analytics::event_counts,
        crate::api::analytics::daily_stats,
        crate::admin::backend_status,
        crate::admin::backend_action,
        admin_api::routes::list,
        admin_api::routes::status,
        admin_api::routes::start,
        admin_api::routes::stop,
        admin_api::routes::restart,
        admin_api::routes::logs,
    ),
    components(schemas(ProblemDocument, schemas::Transfer, schemas::Applied, schemas::Wallet,
        schemas::CacheEntry, schemas::Conversation, schemas::Message, schemas::MessagePage,
        schemas::Fact, schemas::FactWithHistory, schemas::Nft, schemas::NftWithHistory,
        schemas::Reward, schemas::Block, schemas::Recorded, schemas::MetricBucket,
        schemas::EventCount, schemas::FoundFact, schemas::ForgetReport, schemas::Statement,
        schemas::BalanceAt, schemas::BatchOutcome, schemas::ChainVerification, schemas::Health,
        schemas::Ready, schemas::RecordedExample, admin_api::routes::ProcessView,
        admin_api::routes::LogLineView)),
    modifiers(&BearerTokens, &CommonProblems),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "users", description = "The minimal identity to run standalone"),
        (name = "ai", description = "The AI assistant's store, per user"),
        (name = "ledger", description = "The FODI token ledger"),
        (name = "analytics", description = "Metrics, events and their rollups"),
        (name = "admin", description = "Supervised processes (admin token)"),
    )
)]
pub struct ApiDoc;

struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The answers any route may give besides its own: refused input, tokens, size, media type,
/// and a database that is unavailable for a moment.
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let common = [
            ("400", "The path, query or body is invalid"),
            ("401", "A bearer token is missing or invalid"),
            ("403", "The token may not do this"),
            ("404", "No such route or resource"),
            ("413", "The body is too large"),
            ("415", "The body is not JSON"),
            ("422", "A value is refused"),
            (
                "503",
                "Unavailable for a moment (database, timeout, shutdown)",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/problem+json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("Problem")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

#[get("/api-docs/openapi.json")]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

const BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const STYLES: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>FODI API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.onload = () => {
  // validatorUrl: null, or the page would send the document to validator.swagger.io.
  window.ui = SwaggerUIBundle({
    url: "/api-docs/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
  });
};
</script>
</body>
</html>
"##;

#[get("/docs")]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

#[get("/docs/swagger-ui-bundle.js")]
pub async fn bundle() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(BUNDLE)
}

#[get("/docs/swagger-ui.css")]
pub async fn styles() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(STYLES)
}
