//! The AI store against references measured in the same run on the same machine:
//!
//! 1. `cache_hits_c8`: cache hits answered by PostgreSQL (100,000 entries of 10,000 users,
//!    8 tasks) against `pgbench -S` (one primary-key select per transaction, prepared, 8
//!    clients) on the same cluster; `cache_hit_p99` is the p99 of those hits against 2 ms;
//! 2. `cache_hits_local_c8`: the same hits with the in-process tier on, against redis-server
//!    GET through the `redis` crate at the same concurrency (each GET's JSON parsed, as the
//!    cache returns parsed values);
//! 3. `cache_cleanup`: expired entries `cleanup_expired` removes per second against the
//!    50,000/s target, with one unbounded `DELETE` of the same rows measured beside it;
//! 4. `last_50_messages` and `token_budget_2000`: windows of a 10,000-message conversation
//!    (among 100,000 messages of other conversations), p95 against 20 ms;
//! 5. `fact_search`: full-text search over 1,000,000 facts of 10,000 users, p95 against 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_store::{
    AiConfig, CacheConfig, Conversations, FactSearch, Memory, NewConversation, PgAiStore,
    ResponseCache, UserId, Window,
};
use anyhow::Context;
use db_core::migrate::core_set;
use db_core::sqlx;

use crate::cluster::BenchCluster;
use crate::compare::{Run, alternate, median, record, settle, wanted};
use crate::load;
use crate::pgbench;
use crate::redis_server::RedisServer;
use crate::report::{Measurement, progress};

pub struct Options {
    pub seconds: u64,
    pub rounds: usize,
    pub clients: usize,
    pub users: usize,
    pub facts_per_user: usize,
    /// Scenario names to run (all when empty).
    pub only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        wanted(&self.only, scenario)
    }
}

const AREA: &str = "ai";
/// Live cache entries per user (`answer-0` .. `answer-9`).
const KEYS_PER_USER: usize = 10;
/// Expired entries per user each cleanup round inserts.
const EXPIRED_PER_USER: i64 = 30;
const CONVERSATION_MESSAGES: i64 = 10_000;
const OTHER_CONVERSATIONS: i64 = 1_000;
const OTHER_MESSAGES_EACH: i64 = 100;
const HIT_P99_TARGET_MS: f64 = 2.0;
const READ_P95_TARGET_MS: f64 = 20.0;
const CLEANUP_TARGET_ROWS_PER_S: f64 = 50_000.0;
/// Words of the facts' vocabulary (three syllables of ten: 1,000 words).
const SYLLABLES: [&str; 10] = ["ba", "ko", "mi", "ra", "su", "te", "lo", "ne", "pi", "da"];
const WORDS_PER_FACT: usize = 8;

/// The users and their live cache keys, cheap to clone into each client.
#[derive(Clone)]
struct Keys {
    users: Arc<Vec<UserId>>,
}

impl Keys {
    fn random(&self) -> (UserId, String) {
        let user = self.users[fastrand::usize(..self.users.len())];
        (user, format!("answer-{}", fastrand::usize(..KEYS_PER_USER)))
    }
}

pub async fn run(options: &Options) -> anyhow::Result<Vec<Measurement>> {
    let bench = BenchCluster::start(
        vec![core_set(), ai_store::migration_set()],
        options.clients as u32 + 4,
    )
    .await?;
    let users: Vec<UserId> = bench
        .create_users(options.users)
        .await?
        .into_iter()
        .map(UserId)
        .collect();
    let keys = Keys {
        users: Arc::new(users),
    };
    let mut measurements = Vec::new();

    if options.wants("cache_hits") || options.wants("cache_hit_p99") {
        fill_cache(&bench, options.users).await?;
        cache_hits(&bench, options, &keys, &mut measurements).await?;
    }
    if options.wants("cache_cleanup") {
        cleanup(&bench, options, &mut measurements).await?;
    }
    if options.wants("last_50_messages") || options.wants("token_budget") {
        conversation_windows(&bench, options, &keys, &mut measurements).await?;
    }
    if options.wants("fact_search") {
        fact_search(&bench, options, &keys, &mut measurements).await?;
    }
    Ok(measurements)
}

/// A store whose cache uses `clients` connections and holds up to `local_entries` in process.
async fn store(
    bench: &BenchCluster,
    clients: usize,
    local_entries: u64,
) -> anyhow::Result<PgAiStore> {
    let config = AiConfig {
        cache: CacheConfig {
            connections: clients,
            local_entries,
            ..CacheConfig::default()
        },
        ..AiConfig::default()
    };
    Ok(PgAiStore::start(bench.db.clone(), config).await?)
}

/// `KEYS_PER_USER` live entries per user with a ~300-byte JSON value each.
async fn fill_cache(bench: &BenchCluster, users: usize) -> anyhow::Result<()> {
    progress(&format!(
        "caching {} answers of {users} users",
        users * KEYS_PER_USER
    ));
    sqlx::query(
        "INSERT INTO ai.cache_entries (user_id, cache_key, value, expires_at)
         SELECT u.id, 'answer-' || n,
                jsonb_build_object('answer', repeat('Soup of the day, then bread. ', 8), 'n', n,
                                   'dishes', jsonb_build_array('soup', 'bread', 'salad')),
                now() + interval '1 day'
           FROM users u, generate_series(0, $1 - 1) n",
    )
    .bind(KEYS_PER_USER as i32)
    .execute(bench.db.primary())
    .await?;
    Ok(())
}

/// Scenarios 1 and 2: hits from PostgreSQL against `pgbench -S`, hits from the in-process
/// tier against Redis.
async fn cache_hits(
    bench: &BenchCluster,
    options: &Options,
    keys: &Keys,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    let (clients, duration) = (options.clients, Duration::from_secs(options.seconds));
    db_core::create_database_if_missing(&bench.cluster.connect_options("postgres"), "pgbench")
        .await?;
    pgbench::initialise(&bench.cluster, "pgbench", 10)?;
    let cluster = bench.cluster.clone();
    let select_only = move |seconds: u64| {
        let cluster = cluster.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                pgbench::select_only(&cluster, "pgbench", clients, seconds)
            })
            .await?
            .map(|result| result.tps)
        }
    };

    let database_tier = store(bench, clients, 0).await?;
    progress("warming up");
    select_only(3).await?;
    hits(&database_tier, keys, clients, Duration::from_secs(3)).await;
    settle(&bench.db, &bench.cluster).await?;

    progress("scenario 1: cache hits answered by PostgreSQL");
    let (reference, ours) = alternate(
        options.rounds,
        || select_only(options.seconds),
        || hits(&database_tier, keys, clients, duration),
    )
    .await?;
    let pgbench_name = format!("pgbench_select_only_c{clients}");
    record(
        measurements,
        Measurement::new(
            AREA,
            format!("cache_hits_c{clients}"),
            "hits_per_s",
            ours.rate,
        )
        .against(&pgbench_name, reference, 0.5)
        .latency(&ours.latency)
        .with("failures", ours.failures)
        .with("entries", (keys.users.len() * KEYS_PER_USER) as u64),
    );
    record(
        measurements,
        Measurement::new(AREA, "cache_hit_p99", "p99_ms", ours.latency.p99_ms)
            .against("target_p99_ms", HIT_P99_TARGET_MS, 1.0)
            .lower_is_better()
            .latency(&ours.latency)
            .with("clients", clients as u64),
    );
    database_tier.cache().flush_hits().await?;
    drop(database_tier);

    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(error) => {
            progress(&format!(
                "scenario 2 skipped, no reference: {error:#} (Debian: apt-get install redis-server)"
            ));
            return Ok(());
        }
    };
    progress("scenario 2: cache hits answered by the in-process tier, against Redis");
    let capacity = (keys.users.len() * KEYS_PER_USER * 2) as u64;
    let local_tier = store(bench, clients, capacity).await?;
    warm_local_tier(&local_tier, keys, clients).await?;
    let connections = redis.fill_from(bench, clients).await?;
    let before = local_tier.cache().stats();
    let (reference, ours) = alternate(
        options.rounds,
        || redis_gets(&connections, keys, duration),
        || hits(&local_tier, keys, clients, duration),
    )
    .await?;
    let after = local_tier.cache().stats();
    let (local, database) = (
        after.local_hits - before.local_hits,
        after.database_hits - before.database_hits,
    );
    record(
        measurements,
        Measurement::new(
            AREA,
            format!("cache_hits_local_c{clients}"),
            "hits_per_s",
            ours.rate,
        )
        .against(format!("redis_get_c{clients}"), reference, 1.0)
        .latency(&ours.latency)
        .with("failures", ours.failures)
        .with(
            "local_share",
            local as f64 / (local + database).max(1) as f64,
        ),
    );
    Ok(())
}

/// Gets of random live keys by `clients` tasks; a miss is a failure (every key is live).
async fn hits(store: &PgAiStore, keys: &Keys, clients: usize, duration: Duration) -> Run {
    let (cache, keys) = (store.cache().clone(), keys.clone());
    load::run(clients, duration, move |_| {
        let (cache, keys) = (cache.clone(), keys.clone());
        async move {
            let (user, key) = keys.random();
            match cache.get(user, &key).await {
                Ok(Some(_)) => Ok(1),
                Ok(None) => Err(format!("{user}/{key} missed")),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await
    .into()
}

/// Reads every live entry once, so that the in-process tier holds them all.
async fn warm_local_tier(store: &PgAiStore, keys: &Keys, clients: usize) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let chunk = keys.users.len().div_ceil(clients.max(1));
    for part in keys.users.chunks(chunk) {
        let (cache, part) = (store.cache().clone(), part.to_vec());
        tasks.spawn(async move {
            for user in part {
                for n in 0..KEYS_PER_USER {
                    cache.get(user, &format!("answer-{n}")).await?;
                }
            }
            Ok::<_, ai_store::AiError>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// GETs of random keys through one connection per client, each value parsed as JSON.
async fn redis_gets(
    connections: &[redis::aio::MultiplexedConnection],
    keys: &Keys,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (connections, keys) = (connections.to_vec(), keys.clone());
    let result = load::run(connections.len(), duration, move |client| {
        let (mut connection, keys) = (connections[client].clone(), keys.clone());
        async move {
            let (user, key) = keys.random();
            let bytes: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("{user}:{key}"))
                .query_async(&mut connection)
                .await
                .map_err(|error| error.to_string())?;
            let bytes = bytes.ok_or_else(|| format!("{user}:{key} missing in Redis"))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|error| error.to_string())?;
            Ok::<_, String>(1)
        }
    })
    .await;
    anyhow::ensure!(
        result.failures == 0,
        "{} Redis GETs failed",
        result.failures
    );
    Ok(result.units_per_second())
}

/// Scenario 3: expired entries removed per second, by the bounded cleanup and by one DELETE.
async fn cleanup(
    bench: &BenchCluster,
    options: &Options,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    progress("scenario 3: cleanup of expired entries");
    let store = store(bench, options.clients, 0).await?;
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for round in 1..=options.rounds.max(1) {
        rows = insert_expired(bench).await?;
        let started = Instant::now();
        let removed = store.cache().cleanup_expired().await?;
        let our_rate = removed as f64 / started.elapsed().as_secs_f64();
        anyhow::ensure!(
            removed == rows,
            "cleanup removed {removed} of {rows} expired entries"
        );

        insert_expired(bench).await?;
        let started = Instant::now();
        let deleted = sqlx::query("DELETE FROM ai.cache_entries WHERE expires_at <= now()")
            .execute(bench.db.primary())
            .await?
            .rows_affected();
        let plain_rate = deleted as f64 / started.elapsed().as_secs_f64();
        progress(&format!(
            "  round {round}: cleanup {our_rate:.0} rows/s, one DELETE {plain_rate:.0} rows/s"
        ));
        ours.push(our_rate);
        plain.push(plain_rate);
    }
    let (ours, plain) = (median(ours), median(plain));
    record(
        measurements,
        Measurement::new(AREA, "cache_cleanup", "rows_per_s", ours)
            .against("target_rows_per_s", CLEANUP_TARGET_ROWS_PER_S, 1.0)
            .with("rows", rows)
            .with("batch", u64::from(CacheConfig::default().cleanup_batch))
            .with("single_delete_rows_per_s", plain.round())
            .with(
                "ratio_to_single_delete",
                (ours / plain * 1000.0).round() / 1000.0,
            ),
    );
    Ok(())
}

/// Inserts `EXPIRED_PER_USER` expired entries per user and vacuums the table, as cleanup would
/// find it after they expired in service.
async fn insert_expired(bench: &BenchCluster) -> anyhow::Result<u64> {
    let inserted = sqlx::query(
        "INSERT INTO ai.cache_entries (user_id, cache_key, value, expires_at)
         SELECT u.id, 'expired-' || n, '{\"answer\": \"yesterday''s soup\"}',
                now() - interval '1 minute' - n * interval '1 second'
           FROM users u, generate_series(1, $1) n",
    )
    .bind(EXPIRED_PER_USER)
    .execute(bench.db.primary())
    .await?
    .rows_affected();
    sqlx::raw_sql("VACUUM (ANALYZE) ai.cache_entries")
        .execute(bench.db.primary())
        .await?;
    Ok(inserted)
}

/// Scenario 4: the last 50 messages, and the messages of a 2,000-token budget, of a
/// 10,000-message conversation.
async fn conversation_windows(
    bench: &BenchCluster,
    options: &Options,
    keys: &Keys,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    let store = Arc::new(store(bench, options.clients, 0).await?);
    let owner = keys.users[0];
    let conversation = store
        .create_conversation(
            owner,
            NewConversation {
                title: Some("A long conversation".into()),
                metadata: serde_json::Value::Null,
            },
        )
        .await?
        .id;
    progress(&format!(
        "writing a {CONVERSATION_MESSAGES}-message conversation and {OTHER_CONVERSATIONS} others"
    ));
    sqlx::query(
        "INSERT INTO ai.conversation_messages (conversation_id, seq, user_id, role, content, token_count, created_at)
         SELECT $1, n, $2, CASE n % 2 WHEN 1 THEN 'user' ELSE 'assistant' END,
                'Message ' || n || ': ' || repeat('what about soup and bread tonight? ', 6),
                40 + n % 20, now() - ($3 - n) * interval '1 second'
           FROM generate_series(1, $3) n",
    )
    .bind(conversation)
    .bind(owner)
    .bind(CONVERSATION_MESSAGES as i32)
    .execute(bench.db.primary())
    .await?;
    sqlx::query(
        "UPDATE ai.conversations SET message_count = $2, last_message_at = now() WHERE id = $1",
    )
    .bind(conversation)
    .bind(CONVERSATION_MESSAGES as i32)
    .execute(bench.db.primary())
    .await?;
    // Built from this module's constants only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "WITH others AS (
             INSERT INTO ai.conversations (user_id, title, message_count, last_message_at)
             SELECT id, 'Another conversation', {OTHER_MESSAGES_EACH}, now()
               FROM users ORDER BY email OFFSET 1 LIMIT {OTHER_CONVERSATIONS}
             RETURNING id, user_id
         )
         INSERT INTO ai.conversation_messages (conversation_id, seq, user_id, role, content, token_count)
         SELECT o.id, n, o.user_id, CASE n % 2 WHEN 1 THEN 'user' ELSE 'assistant' END,
                repeat('and for dessert? ', 10), 30
           FROM others o, generate_series(1, {OTHER_MESSAGES_EACH}) n"
    )))
    .execute(bench.db.primary())
    .await?;
    sqlx::raw_sql("VACUUM (ANALYZE) ai.conversations, ai.conversation_messages")
        .execute(bench.db.primary())
        .await?;

    let duration = Duration::from_secs(options.seconds);
    for (name, window, expected) in [
        ("last_50_messages", Window::LastMessages(50), Some(50)),
        ("token_budget_2000", Window::TokenBudget(2_000), None),
    ] {
        if !options.wants(name) {
            continue;
        }
        progress(&format!("scenario 4: {name}"));
        let store = store.clone();
        let result: Run = load::run(options.clients, duration, move |_| {
            let store = store.clone();
            async move {
                let messages = store
                    .window(owner, conversation, window)
                    .await
                    .map_err(|error| error.to_string())?;
                let complete = match expected {
                    Some(count) => messages.len() == count,
                    None => {
                        messages.last().map(|message| message.seq)
                            == Some(CONVERSATION_MESSAGES as i32)
                    }
                };
                if complete {
                    Ok(1)
                } else {
                    Err(format!("an incomplete window: {} messages", messages.len()))
                }
            }
        })
        .await
        .into();
        record(
            measurements,
            read_latency(name, &result).with("messages_in_conversation", CONVERSATION_MESSAGES),
        );
    }
    Ok(())
}

/// A read's p95 against the 20 ms target.
fn read_latency(name: &str, result: &Run) -> Measurement {
    Measurement::new(AREA, name, "p95_ms", result.latency.p95_ms)
        .against("target_p95_ms", READ_P95_TARGET_MS, 1.0)
        .lower_is_better()
        .latency(&result.latency)
        .with("reads_per_s", result.rate.round())
        .with("failures", result.failures)
}

/// Scenario 5: full-text search over a million facts.
async fn fact_search(
    bench: &BenchCluster,
    options: &Options,
    keys: &Keys,
    measurements: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    let vocabulary: Arc<Vec<String>> = Arc::new(
        SYLLABLES
            .iter()
            .flat_map(|a| {
                SYLLABLES
                    .iter()
                    .flat_map(move |b| SYLLABLES.iter().map(move |c| format!("{a}{b}{c}")))
            })
            .collect(),
    );
    let facts = insert_facts(bench, options, &vocabulary).await?;
    progress("scenario 5: full-text search over the facts");
    let store = Arc::new(store(bench, options.clients, 0).await?);
    let (users, words) = (keys.users.clone(), vocabulary.clone());
    let result: Run = load::run(
        options.clients,
        Duration::from_secs(options.seconds),
        move |_| {
            let (store, users, words) = (store.clone(), users.clone(), words.clone());
            async move {
                let user = users[fastrand::usize(..users.len())];
                let word = || words[fastrand::usize(..words.len())].as_str();
                // Half one word, half either of two (websearch syntax).
                let text = if fastrand::bool() {
                    word().to_owned()
                } else {
                    format!("{} or {}", word(), word())
                };
                let search = FactSearch {
                    text,
                    category: None,
                    metadata: None,
                    limit: 10,
                };
                store
                    .search_facts(user, &search)
                    .await
                    .map(|_| 1)
                    .map_err(|error| error.to_string())
            }
        },
    )
    .await
    .into();
    record(
        measurements,
        read_latency("fact_search", &result)
            .with("facts", facts)
            .with("users", keys.users.len() as u64),
    );
    Ok(())
}

/// `facts_per_user` facts of `WORDS_PER_FACT` random words for every user, a thousand users
/// per statement; returns how many facts there are.
async fn insert_facts(
    bench: &BenchCluster,
    options: &Options,
    vocabulary: &[String],
) -> anyhow::Result<i64> {
    let words = ["w[1 + floor(random() * array_length(w, 1))::int]"; WORDS_PER_FACT].join(", ");
    let statement = format!(
        "INSERT INTO ai.memory_facts (user_id, fact_key, content, category, confidence, metadata)
         SELECT u.id, 'fact-' || n, concat_ws(' ', {words}),
                (ARRAY['diet', 'taste', 'allergy', 'schedule', 'household'])[1 + n % 5], 0.5,
                jsonb_build_object('app', CASE n % 2 WHEN 0 THEN 'web' ELSE 'mobile' END)
           FROM (SELECT id FROM users ORDER BY email OFFSET $1 LIMIT $2) u,
                generate_series(1, $3) n, (SELECT $4::text[] AS w) vocabulary"
    );
    const USERS_PER_STATEMENT: usize = 1_000;
    let started = Instant::now();
    for offset in (0..options.users).step_by(USERS_PER_STATEMENT) {
        // Built from this module's constants only.
        sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
            .bind(offset as i64)
            .bind(USERS_PER_STATEMENT as i64)
            .bind(options.facts_per_user as i32)
            .bind(vocabulary)
            .execute(bench.db.primary())
            .await
            .context("cannot insert the facts")?;
        progress(&format!(
            "  facts of {} users written ({:.0} s)",
            (offset + USERS_PER_STATEMENT).min(options.users),
            started.elapsed().as_secs_f64()
        ));
    }
    sqlx::raw_sql("VACUUM (ANALYZE) ai.memory_facts, ai.memory_fact_history")
        .execute(bench.db.primary())
        .await?;
    Ok(sqlx::query_scalar("SELECT count(*) FROM ai.memory_facts")
        .fetch_one(bench.db.primary())
        .await?)
}
