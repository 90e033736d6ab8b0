//! `migrator import-sled PATH`: moves the AI assistant's former Sled store into schema `ai`.
//!
//! The expected layout (docs/operations.md has it for operators):
//!
//! | tree | key (UTF-8) | value (JSON object) |
//! | --- | --- | --- |
//! | `cache` | `<user uuid>:<cache key>` | `value` (any JSON, required), `expires_at`, `created_at` (RFC 3339), `hit_count` |
//! | `conversations` | `<conversation uuid>` | `user_id` (required), `title`, `created_at`, `messages`: `[{role, content, token_count, created_at}]` |
//! | `memory_facts` | `<user uuid>:<fact key>` | `content` (required), `category`, `confidence` (0 to 1, default 0.5), `source` (default `sled_import`), `metadata` (object), `expires_at`, `created_at` |
//!
//! Unknown fields are ignored; other trees are reported and left alone. Each record is
//! written by `ai_store::import` or skipped when already present, so a second run writes
//! nothing. A record that cannot be read or is refused (bad JSON, unknown user, a field out of
//! range) is rejected with its reason and the import goes on; a database failure stops it
//! (run it again: what was written stays written).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use ai_store::import::{Imported, LegacyCacheEntry, LegacyConversation, LegacyFact, LegacyMessage};
use ai_store::{AiError, ConversationId, PgAiStore, Role, UserId};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const CACHE_TREE: &str = "cache";
pub const CONVERSATIONS_TREE: &str = "conversations";
pub const FACTS_TREE: &str = "memory_facts";
const TREES: [&str; 3] = [CACHE_TREE, CONVERSATIONS_TREE, FACTS_TREE];
/// Rejections listed one by one in the summary (all are counted).
const LISTED_REJECTIONS: usize = 20;

/// What happened to the records of one tree.
#[derive(Debug, Default, Serialize)]
pub struct TreeSummary {
    pub read: u64,
    pub written: u64,
    /// Skipped: present already, or expired.
    pub skipped: u64,
    pub rejected: u64,
    /// Why records were skipped or rejected, with how many.
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Rejection {
    pub tree: &'static str,
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ImportSummary {
    pub trees: BTreeMap<&'static str, TreeSummary>,
    /// Trees of the store this import does not know.
    pub ignored_trees: Vec<String>,
    /// The first rejections, record by record.
    pub rejections: Vec<Rejection>,
}

impl ImportSummary {
    pub fn rejected(&self) -> u64 {
        self.trees.values().map(|tree| tree.rejected).sum()
    }
}

/// A record refused: `reason` is shared by its kind (for counting), `detail` is this one's.
struct Refusal {
    reason: String,
    detail: String,
}

impl Refusal {
    fn new(reason: &str, detail: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_owned(),
            detail: format!("{reason}: {detail}"),
        }
    }
}

/// A store-side refusal of a record, or the failure that stops the import.
fn refusal_of(error: AiError) -> anyhow::Result<Refusal> {
    match error {
        AiError::UserNotFound(user) => Ok(Refusal::new("unknown user", user)),
        AiError::InvalidField { field, reason } => {
            Ok(Refusal::new(&format!("invalid {field}"), reason))
        }
        other => Err(anyhow::Error::new(other).context("writing to the database failed")),
    }
}

#[derive(Deserialize)]
struct CacheRecord {
    value: serde_json::Value,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    hit_count: i64,
}

#[derive(Deserialize)]
struct ConversationRecord {
    user_id: Uuid,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    messages: Vec<MessageRecord>,
}

#[derive(Deserialize)]
struct MessageRecord {
    role: Role,
    content: String,
    #[serde(default)]
    token_count: u32,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

fn half() -> f32 {
    0.5
}

fn imported_source() -> String {
    "sled_import".into()
}

#[derive(Deserialize)]
struct FactRecord {
    content: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default = "half")]
    confidence: f32,
    #[serde(default = "imported_source")]
    source: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

/// `<user uuid>:<name>` keys.
fn user_key(key: &str) -> Result<(UserId, String), Refusal> {
    let (user, name) = key
        .split_once(':')
        .ok_or_else(|| Refusal::new("key is not <user uuid>:<name>", key))?;
    let user = user
        .parse::<Uuid>()
        .map_err(|error| Refusal::new("key does not start with a user uuid", error))?;
    Ok((UserId(user), name.to_owned()))
}

fn json<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(value)
        .map_err(|error| Refusal::new("value is not the expected JSON", error))
}

/// Reads one record of `tree` and hands it to the store.
async fn import_record(
    store: &PgAiStore,
    tree: &str,
    key: &str,
    value: &[u8],
) -> anyhow::Result<Result<Imported, Refusal>> {
    let written = match tree {
        CACHE_TREE => {
            let parsed = user_key(key)
                .and_then(|(user, name)| Ok((user, name, json::<CacheRecord>(value)?)));
            let (user, key, record) = match parsed {
                Ok(parsed) => parsed,
                Err(refusal) => return Ok(Err(refusal)),
            };
            store
                .import_cache_entry(&LegacyCacheEntry {
                    user,
                    key,
                    value: record.value,
                    expires_at: record.expires_at,
                    created_at: record.created_at,
                    hit_count: record.hit_count,
                })
                .await
        }
        CONVERSATIONS_TREE => {
            let id = match key.parse::<Uuid>() {
                Ok(id) => ConversationId(id),
                Err(error) => {
                    return Ok(Err(Refusal::new("key is not a conversation uuid", error)));
                }
            };
            let record = match json::<ConversationRecord>(value) {
                Ok(record) => record,
                Err(refusal) => return Ok(Err(refusal)),
            };
            store
                .import_conversation(&LegacyConversation {
                    id,
                    user: UserId(record.user_id),
                    title: record.title,
                    created_at: record.created_at,
                    messages: record
                        .messages
                        .into_iter()
                        .map(|message| LegacyMessage {
                            role: message.role,
                            content: message.content,
                            token_count: message.token_count,
                            created_at: message.created_at,
                        })
                        .collect(),
                })
                .await
        }
        _ => {
            let parsed =
                user_key(key).and_then(|(user, name)| Ok((user, name, json::<FactRecord>(value)?)));
            let (user, key, record) = match parsed {
                Ok(parsed) => parsed,
                Err(refusal) => return Ok(Err(refusal)),
            };
            store
                .import_fact(&LegacyFact {
                    user,
                    key,
                    content: record.content,
                    category: record.category,
                    confidence: record.confidence,
                    source: record.source,
                    metadata: record.metadata.unwrap_or_else(|| serde_json::json!({})),
                    expires_at: record.expires_at,
                    created_at: record.created_at,
                })
                .await
        }
    };
    match written {
        Ok(imported) => Ok(Ok(imported)),
        Err(error) => Ok(Err(refusal_of(error)?)),
    }
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>13} [{bar:30}] {pos}/{len} records, {per_sec}, {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Imports the Sled store at `path` through `store`. The progress bar is drawn on stderr when
/// `show_progress` and stderr is a terminal.
pub async fn import(
    path: &Path,
    store: &PgAiStore,
    show_progress: bool,
) -> anyhow::Result<ImportSummary> {
    // sled creates a store where there is none: look first.
    if !path.join("conf").is_file() {
        bail!(
            "{} is not a Sled database (no `conf` file in it)",
            path.display()
        );
    }
    let db = sled::open(path).with_context(|| {
        format!(
            "cannot open the Sled database at {} (is the assistant still running on it?)",
            path.display()
        )
    })?;
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    let mut summary = ImportSummary {
        trees: TREES
            .into_iter()
            .map(|tree| (tree, TreeSummary::default()))
            .collect(),
        ignored_trees: names
            .iter()
            .filter(|name| !TREES.contains(&name.as_str()) && name.as_str() != "__sled__default")
            .cloned()
            .collect(),
        rejections: Vec::new(),
    };
    let present: Vec<&'static str> = TREES
        .into_iter()
        .filter(|tree| names.iter().any(|name| name == tree))
        .collect();
    let mut trees = Vec::new();
    let mut total = 0_u64;
    for name in present {
        let tree = db.open_tree(name)?;
        total += tree.len() as u64;
        trees.push((name, tree));
    }
    let bar = progress_bar(total, show_progress && std::io::stderr().is_terminal());
    for (name, tree) in trees {
        bar.set_prefix(name);
        let counts = summary.trees.entry(name).or_default();
        for record in tree.iter() {
            let (key, value) = record.with_context(|| format!("cannot read tree {name}"))?;
            counts.read += 1;
            bar.inc(1);
            let outcome = match std::str::from_utf8(&key) {
                Ok(key) => import_record(store, name, key, &value).await?,
                Err(error) => Err(Refusal::new("key is not UTF-8", error)),
            };
            match outcome {
                Ok(Imported::Written) => counts.written += 1,
                Ok(skipped @ (Imported::AlreadyPresent | Imported::Expired)) => {
                    counts.skipped += 1;
                    let reason = match skipped {
                        Imported::Expired => "expired",
                        _ => "already present",
                    };
                    *counts.reasons.entry(reason.into()).or_default() += 1;
                }
                Err(refusal) => {
                    counts.rejected += 1;
                    *counts.reasons.entry(refusal.reason).or_default() += 1;
                    if summary.rejections.len() < LISTED_REJECTIONS {
                        summary.rejections.push(Rejection {
                            tree: name,
                            key: String::from_utf8_lossy(&key).into_owned(),
                            reason: refusal.detail,
                        });
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}
