//! The api-server with `database.url` on a real PgBouncer in transaction mode (four server
//! connections for all its pools) and `session_url` on PostgreSQL: users, wallets, concurrent
//! transfers, the AI cache (its in-process tier listening on a session) and conversations,
//! analytics, the background jobs and the supervision election work; the ledger's invariants
//! and chain hold; PgBouncer's `SHOW POOLS` and `SHOW STATS` prove the traffic went through it.

use std::sync::Arc;
use std::time::Duration;

use api_server::settings::Settings;
use db_core::testing::TestDb;
use db_core::testing::pgbouncer::PgBouncer;
use db_core::{DbConfig, Pooling};
use serde_json::json;

use crate::ledger::Api;
use crate::{spawn, units};

const TOKEN: i64 = 1_000_000_000;

/// PgBouncer's counter `column` of `SHOW STATS` for `database`.
fn served(bouncer: &PgBouncer, database: &str, column: &str) -> u64 {
    bouncer
        .show("STATS")
        .iter()
        .find(|row| row.get("database").map(String::as_str) == Some(database))
        .and_then(|row| row.get(column))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_server_works_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new(api_server::all_sets()).await;
    let login = db.connect_options().get_username().to_owned();
    let bouncer = PgBouncer::start(&db.connect_options(), &[&login], 4).await;
    let mut settings = Settings {
        database: DbConfig {
            pooling: Pooling::Transaction,
            session_url: Some(db.url()),
            ..DbConfig::with_url(bouncer.url(&login, db.name()))
        },
        ..Settings::default()
    };
    settings.jobs.ledger_sealer = Duration::from_millis(200);
    settings.jobs.history_settler = Duration::from_millis(200);
    settings.jobs.daily_stats_refresh = Duration::from_millis(200);
    settings.jobs.partition_maintenance = Duration::from_millis(200);
    settings.jobs.ai_maintenance = Duration::from_millis(200);
    settings.ledger.block_size = 16;
    // The session-bound parts: the supervision election (a supervised backend) and the AI
    // cache's in-process tier (LISTEN).
    let backend_port = test_support::free_port();
    settings.orchestrator.enabled = true;
    settings.orchestrator.binary = Some("/usr/bin/python3".into());
    settings.orchestrator.args = vec![
        test_support::child_script(),
        "--port".into(),
        backend_port.to_string(),
    ];
    settings.orchestrator.url = format!("http://127.0.0.1:{backend_port}");
    settings.ai.cache.local_entries = 1_000;
    let (base, handle, running) = spawn(settings).await;
    let api = Arc::new(Api::new(&base));
    let (status, ready) = api.get("/ready").await;
    assert_eq!(status, 200, "{ready}\n{}", bouncer.log());
    let supervising = test_support::eventually(Duration::from_secs(15), || async {
        let (_, backend) = api.get("/api/v1/admin/backend/status").await;
        backend["state"] == "running"
    })
    .await;
    assert!(
        supervising,
        "the election (on session_url) never started the backend"
    );

    // Six wallets of 10 tokens.
    const WALLETS: usize = 6;
    api.fund_pool("60").await;
    let mut users = Vec::new();
    let mut wallets = Vec::new();
    for n in 0..WALLETS {
        let (user, wallet) = api
            .funded_wallet(&format!("bouncer-{n}@example.com"), "10")
            .await;
        wallets.push(wallet);
        users.push(user);
    }
    let wallets = Arc::new(wallets);

    // 24 clients, 15 transfers each: some refused for want of funds, none applied twice.
    let clients: Vec<_> = (0..24_usize)
        .map(|client| {
            let (api, wallets) = (api.clone(), wallets.clone());
            tokio::spawn(async move {
                let mut applied = Vec::new();
                for n in 0..15_usize {
                    let from = (client + n) % WALLETS;
                    let to = (from + 1 + (client * 3 + n) % (WALLETS - 1)) % WALLETS;
                    let amount = 1 + (client + 2 * n) % 4;
                    let body = json!({ "debit": wallets[from], "credit": wallets[to], "amount": amount.to_string() });
                    let key = format!("b{client}-{n}");
                    let (status, answer) = api
                        .send("POST", "/api/v1/ledger/transfers", Some(body), Some(&key))
                        .await;
                    match status {
                        201 => {
                            assert_eq!(units(&answer["transfer"]["amount"]), amount as u64 * TOKEN as u64);
                            applied.push((from, to, amount as i64));
                        }
                        409 => assert_eq!(answer["type"], "/problems/insufficient-funds", "{answer}"),
                        _ => panic!("unexpected {status}: {answer}"),
                    }
                }
                applied
            })
        })
        .collect();
    let (expected, count) = crate::ledger::expected_balances(clients, WALLETS, 10).await;
    assert!(count > 50, "only {count} transfers applied");
    for (index, wallet) in wallets.iter().enumerate() {
        let (status, balance) = api.get(&format!("/api/v1/ledger/wallets/{wallet}")).await;
        assert_eq!(status, 200, "{balance}");
        assert_eq!(
            units(&balance["posted"]) as i64,
            expected[&index] * TOKEN,
            "wallet {index}"
        );
        let (status, statement) = api
            .get(&format!(
                "/api/v1/ledger/wallets/{wallet}/statement?limit=5"
            ))
            .await;
        assert_eq!(status, 200, "{statement}");
    }

    // Users read back; the AI cache (its own connections) and a conversation.
    for user in &users {
        let (status, read) = api.get(&format!("/api/v1/users/{user}")).await;
        assert_eq!((status, read["id"].as_str()), (200, Some(user.as_str())));
    }
    let entry = format!("/api/v1/ai/users/{}/cache/menu", users[0]);
    let (status, _) = api
        .put(
            &entry,
            json!({ "value": { "dishes": ["soup"] }, "ttl_seconds": 60 }),
        )
        .await;
    assert_eq!(status, 204);
    for _ in 0..3 {
        let (status, cached) = api.get(&entry).await;
        assert_eq!(
            (status, &cached["value"]),
            (200, &json!({ "dishes": ["soup"] }))
        );
    }
    // Replaced: the in-process tier, told by its LISTEN session, serves the new value.
    let (status, _) = api
        .put(
            &entry,
            json!({ "value": { "dishes": ["stew"] }, "ttl_seconds": 60 }),
        )
        .await;
    assert_eq!(status, 204);
    let fresh = test_support::eventually(Duration::from_secs(5), || async {
        api.get(&entry).await.1["value"] == json!({ "dishes": ["stew"] })
    })
    .await;
    assert!(fresh, "the replaced entry was never served");
    let (status, conversation) = api
        .post(
            &format!("/api/v1/ai/users/{}/conversations", users[1]),
            json!({ "title": "Through the pooler" }),
        )
        .await;
    assert_eq!(status, 201, "{conversation}");
    let messages = format!(
        "/api/v1/ai/users/{}/conversations/{}/messages",
        users[1],
        conversation["id"].as_str().unwrap()
    );
    let message = json!({ "role": "user", "content": "hello", "token_count": 1 });
    assert_eq!(api.post(&messages, message).await.0, 201);
    let (status, page) = api.get(&messages).await;
    assert_eq!(
        (status, page["messages"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    // Analytics: an event is recorded and counted once the rollup runs.
    let (status, _) = api
        .post(
            "/api/v1/analytics/events",
            json!({ "kind": "order_placed", "user_id": users[2] }),
        )
        .await;
    assert_eq!(status, 202);
    let today = chrono::Utc::now().date_naive();
    let counted = test_support::eventually(Duration::from_secs(15), || async {
        let (_, stats) = api
            .get(&format!(
                "/api/v1/analytics/daily-stats?from={today}&to={today}&kind=order_placed"
            ))
            .await;
        stats[0]["events"].as_i64() == Some(1)
    })
    .await;
    assert!(counted, "the event never reached the daily rollup");

    // The sealer sealed blocks through PgBouncer; the chain and the invariants hold (read
    // here on a direct connection).
    let direct = ledger::PgLedger::new(
        db_core::Db::connect_with(&DbConfig::default(), db.connect_options())
            .await
            .unwrap(),
        ledger::LedgerConfig::default(),
    );
    let sealed = test_support::eventually(Duration::from_secs(15), || async {
        ledger::Ledger::verify_chain(&direct)
            .await
            .is_ok_and(|chain| chain.blocks_checked >= 3)
    })
    .await;
    let chain = ledger::Ledger::verify_chain(&direct).await.unwrap();
    assert!(sealed && chain.is_valid(), "{chain:?}");
    let report = ledger::Ledger::check_invariants(&direct).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    direct.shutdown().await;
    let (status, ready) = api.get("/ready").await;
    assert_eq!(status, 200, "{ready}");

    // PgBouncer carried it: a pool for this database, and more transactions than the
    // transfers alone (each is one).
    let pools = bouncer.show("POOLS");
    let pool = pools
        .iter()
        .find(|row| row.get("database").map(String::as_str) == Some(db.name()))
        .unwrap_or_else(|| panic!("no PgBouncer pool for the database: {pools:?}"));
    let sum = |columns: &[&str]| -> u64 {
        columns
            .iter()
            .filter_map(|column| pool.get(*column)?.parse::<u64>().ok())
            .sum()
    };
    let (clients, servers) = (
        sum(&["cl_active", "cl_waiting"]),
        sum(&["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]),
    );
    assert!(
        servers <= 4 && clients > servers,
        "{clients} clients should share at most 4 server connections: {pool:?}"
    );
    let transactions = served(&bouncer, db.name(), "total_xact_count");
    assert!(
        transactions > 24 * 15,
        "PgBouncer served only {transactions} transactions"
    );
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    let log = bouncer.log();
    assert!(
        !log.contains("ERROR") && !log.contains("FATAL"),
        "PgBouncer logged errors:\n{log}"
    );
    db.close().await;
}
