//! Two api-server binaries on one database, as behind a load balancer: one supervises the
//! backend and the other takes over when it stops; the single-runner jobs run on both without
//! conflict; a cache entry changed through one is not served stale by the other's in-process
//! tier once the change's notification arrived; a `/ws` client of one sees transfers made
//! through the other.

use std::time::{Duration, Instant};

use db_core::testing::TestDb;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::ledger::Api;
use crate::{metrics_text, spawn_binary, terminate};
use test_support::{child_script, eventually, free_port};

async fn backend_state(api: &Api) -> Value {
    let (status, body) = api.get("/api/v1/admin/backend/status").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A binary that gets SIGTERM when the test ends, passed or failed: stopped so, it stops the
/// backend it supervises, which the SIGKILL of `kill_on_drop` would leave running.
struct Stopping(tokio::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        // `id()` is gone once the test waited for the process itself.
        let Some(pid) = self.0.id() else { return };
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while running(pid.as_raw()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Neither gone nor a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|state| state.trim_start().starts_with('Z'))
    })
}

/// The sum of a counter's series (with `labels` in their label set) in a `/metrics` text.
fn counter(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_binaries_share_one_database() {
    let db = TestDb::new(api_server::all_sets()).await;
    let port = free_port();
    let config = format!(
        "[orchestrator]\nenabled = true\nbinary = \"/usr/bin/python3\"\n\
         args = [\"{}\", \"--port\", \"{port}\"]\nurl = \"http://127.0.0.1:{port}\"\n\
         [ai.cache]\nlocal_entries = 1000\n\
         [jobs]\nledger_sealer = \"200ms\"\ndaily_stats_refresh = \"300ms\"\n\
         partition_maintenance = \"500ms\"\nledger_audit = \"1s\"\n",
        child_script()
    );
    let (first, first_process) = spawn_binary(&db, &config).await;
    let mut first_process = Stopping(first_process);
    let (second, second_process) = spawn_binary(&db, &config).await;
    let mut second_process = Stopping(second_process);
    let (a, b) = (Api::new(&first), Api::new(&second));

    // One of them supervises the backend.
    assert!(
        eventually(Duration::from_secs(15), || async {
            backend_state(&a).await["state"] == "running"
        })
        .await,
        "the first binary supervises"
    );
    assert_eq!(backend_state(&b).await["state"], "stopped", "one copy only");

    // A /ws client of the second sees a transfer made through the first.
    let mut wallets = Vec::new();
    for name in ["alice", "bob"] {
        let user = a.user(&format!("{name}-two-binaries@example.com")).await;
        let (_, wallet) = a
            .post("/api/v1/ledger/wallets", json!({ "user_id": user }))
            .await;
        wallets.push(wallet["id"].as_str().unwrap().to_owned());
    }
    let (status, issued) = a
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": wallets[0], "amount": "10" }),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let ws_base = second.replace("http://", "ws://");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{ws_base}/ws?topics=transfers&wallets={}",
        wallets[1]
    ))
    .await
    .unwrap();
    let (status, sent) = a
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": wallets[0], "credit": wallets[1], "amount": "2.5" }),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["transfer"]["id"] == sent["transfer"]["id"] {
                    return event;
                }
            }
        }
    })
    .await
    .expect("the other instance's transfer reached this instance's client");
    assert_eq!(seen["transfer"]["credit_wallet"], wallets[1]);

    // The cache: served from the second's memory, then replaced through the first.
    let user = a.user("cache-two-binaries@example.com").await;
    let entry = format!("/api/v1/ai/users/{user}/cache/menu");
    let (status, _) = a
        .put(&entry, json!({ "value": "v1", "ttl_seconds": 600 }))
        .await;
    assert!((200..300).contains(&status));
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, read) = b.get(&entry).await;
            assert_eq!(read["value"], "v1");
            let metrics = metrics_text(&second).await;
            counter(&metrics, "ai_cache_lookups_total", "hit_local") > 0.0
        })
        .await,
        "the second serves the entry from memory"
    );
    let (status, _) = a
        .put(&entry, json!({ "value": "v2", "ttl_seconds": 600 }))
        .await;
    assert!((200..300).contains(&status));
    let replaced = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get(&entry).await.1["value"] == "v2"
        })
        .await,
        "the second still serves the replaced value"
    );
    // The window is the notification's trip: milliseconds, not a TTL.
    assert!(replaced.elapsed() < Duration::from_secs(1));

    // The single-runner jobs ran on both, none failing: the sealer's lock, the refresh's and
    // the partitions' keep them from colliding; the chain is whole.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for base in [&first, &second] {
        let metrics = metrics_text(base).await;
        for job in [
            "ledger_sealer",
            "daily_stats_refresh",
            "partition_maintenance",
        ] {
            let label = format!("job_name=\"{job}\"");
            let ok = counter(
                &metrics,
                "fodi_job_runs_total",
                &format!("{label},outcome=\"ok\""),
            );
            let failed = counter(
                &metrics,
                "fodi_job_runs_total",
                &format!("{label},outcome=\"error\""),
            );
            assert!(
                ok > 0.0 && failed == 0.0,
                "{base} {job}: {ok} ok, {failed} failed"
            );
        }
    }
    let (status, verified) = b.get("/api/v1/ledger/blocks/verify").await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["valid"], true, "{verified}");
    assert!(
        verified["verification"]["blocks_checked"].as_i64().unwrap() >= 1,
        "{verified}"
    );

    // The supervising binary stops: the other takes the backend over.
    let leader_pid = backend_state(&a).await["pid"].as_u64().unwrap();
    assert!(terminate(&mut first_process.0).await.success());
    assert!(
        eventually(Duration::from_secs(15), || async {
            let state = backend_state(&b).await;
            state["state"] == "running" && state["pid"].as_u64() != Some(leader_pid)
        })
        .await,
        "the second binary took the backend over"
    );
    assert!(terminate(&mut second_process.0).await.success());
}
