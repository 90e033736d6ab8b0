//! Learning examples: idempotent recording under concurrency, and a streaming export.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ai_store::{AiError, ExportScope, Feedback, LearningLog, NewExample};
use db_core::sqlx;
use serde_json::json;
use tokio::io::AsyncWrite;

use crate::support::Fixture;

fn example(key: &str, feedback: Feedback) -> NewExample {
    NewExample {
        idempotency_key: key.into(),
        prompt: "What should I cook tonight?".into(),
        response: "A mushroom risotto.".into(),
        feedback,
        metadata: json!({"model": "m1"}),
    }
}

#[tokio::test]
async fn an_example_is_stored_once_and_a_different_one_under_its_key_is_a_conflict() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let correction = Feedback::Correction("I am allergic to mushrooms".into());
    let first = fx
        .store
        .record_example(user, example("e-1", correction.clone()))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.example.feedback, correction);
    let again = fx
        .store
        .record_example(user, example("e-1", correction))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.example, first.example);
    let error = fx
        .store
        .record_example(user, example("e-1", Feedback::Positive))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AiError::ExampleConflict { ref key } if key == "e-1"),
        "{error:?}"
    );
    // The same key is another user's own.
    let other = fx.user().await;
    assert!(
        fx.store
            .record_example(other, example("e-1", Feedback::Positive))
            .await
            .unwrap()
            .created
    );
}

#[tokio::test]
async fn concurrent_recorders_of_one_example_store_it_once() {
    let fx = Fixture::new().await;
    let user = fx.user().await;
    let store = Arc::new(fx.store.clone());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_example(user, example("same", Feedback::Neutral))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let recorded = task.await.unwrap().unwrap();
        created += usize::from(recorded.created);
        ids.insert(recorded.example.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
}

/// Counts what is written and keeps only the first and the last line.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
    lines: u64,
    first: Vec<u8>,
    current: Vec<u8>,
    last: Vec<u8>,
}

impl AsyncWrite for CountingSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes += data.len() as u64;
        for &byte in data {
            if byte == b'\n' {
                self.lines += 1;
                let line = std::mem::take(&mut self.current);
                if self.first.is_empty() {
                    self.first = line.clone();
                }
                self.last = line;
            } else {
                self.current.push(byte);
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Peak resident memory of this process since the last reset, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn reset_peak_rss() {
    // "5" resets the peak resident set size to the current one (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test]
async fn exporting_a_hundred_thousand_examples_takes_bounded_memory() {
    let fx = Fixture::new().await;
    let (user, other) = (fx.user().await, fx.user().await);
    // 100,000 examples of about 2 KB each: 200 MB of JSON lines, far more than the export may
    // hold. Written by SQL: the export, not the setup, is under test.
    sqlx::query(
        "INSERT INTO ai.learning_data (user_id, idempotency_key, prompt, response, feedback, created_at)
         SELECT CASE WHEN g % 10 = 0 THEN $2 ELSE $1 END, 'k' || g, 'prompt ' || g || ' ' || repeat('p', 1000),
                repeat('r', 1000), 'positive', now() - (100001 - g) * interval '1 millisecond'
           FROM generate_series(1, 100000) AS g",
    )
    .bind(user)
    .bind(other)
    .execute(fx.db.pool())
    .await
    .unwrap();

    let mut sink = CountingSink::default();
    reset_peak_rss();
    let before = peak_rss();
    let written = fx
        .store
        .export_jsonl(&ExportScope::default(), &mut sink)
        .await
        .unwrap();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!((written, sink.lines), (100_000, 100_000));
    assert!(sink.bytes > 200_000_000, "{} bytes", sink.bytes);
    assert!(
        grown < 64 * 1024 * 1024,
        "peak memory grew by {} MiB while exporting {} MiB",
        grown / (1024 * 1024),
        sink.bytes / (1024 * 1024)
    );
    let first: serde_json::Value = serde_json::from_slice(&sink.first).unwrap();
    let last: serde_json::Value = serde_json::from_slice(&sink.last).unwrap();
    assert!(
        first["prompt"].as_str().unwrap().starts_with("prompt 1 "),
        "oldest first"
    );
    assert!(
        last["prompt"]
            .as_str()
            .unwrap()
            .starts_with("prompt 100000 ")
    );
    assert_eq!(first["feedback"], "positive");

    // One user's examples only.
    let mut own = CountingSink::default();
    let scope = ExportScope {
        user: Some(other),
        ..ExportScope::default()
    };
    assert_eq!(
        fx.store.export_jsonl(&scope, &mut own).await.unwrap(),
        10_000
    );
}
