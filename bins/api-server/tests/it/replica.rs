//! The api-server on a primary and a real streaming replica (`pg_basebackup -R`): lag-tolerant
//! reads are served there, a user just created is found anyway, and stopping the replica
//! changes no answer.

use std::time::Duration;

use api_server::settings::Settings;
use db_core::DbConfig;
use db_core::sqlx;
use db_core::testing::replica::ReplicatedClusters;
use serde_json::{Value, json};

/// Waits up to 30 s for `holds`, failing the test with `what` otherwise.
async fn wait_for<F: Future<Output = bool>>(what: &str, holds: impl FnMut() -> F) {
    assert!(
        test_support::eventually(Duration::from_secs(30), holds).await,
        "never: {what}"
    );
}

#[tokio::test]
async fn user_reads_go_to_the_replica_and_survive_it_stopping() {
    let mut clusters = ReplicatedClusters::start().await;
    let mut settings = Settings {
        database: DbConfig {
            replica_url: Some(clusters.replica_url("postgres")),
            replica_max_lag: Duration::from_secs(1),
            ..DbConfig::with_url(clusters.primary_url("postgres"))
        },
        ..Settings::default()
    };
    settings.server.port = 0;
    settings.migrations.apply_on_start = Some(true);
    let application = api_server::Application::build(settings).await.unwrap();
    let pools = application.pools().clone();
    let base = format!("http://127.0.0.1:{}", application.port());
    let handle = application.stop_handle();
    let running = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();
    let get = async |path: &str| -> (u16, Value) {
        let answer = client.get(format!("{base}{path}")).send().await.unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    };

    wait_for("reads go to the replica", || async {
        pools.core.reads_from_replica()
    })
    .await;
    // Created on the primary and read at once: found, whether or not the replica has it yet.
    let mut users = Vec::new();
    for n in 0..5 {
        let created: Value = client
            .post(format!("{base}/api/v1/users"))
            .json(&json!({ "email": format!("reader{n}@example.com") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, read) = get(&format!("/api/v1/users/{id}")).await;
        assert_eq!((status, &read), (200, &created));
        users.push(created);
    }
    // The core pool's sessions on the replica answered them.
    let replica = sqlx::PgPool::connect(&clusters.replica_url("postgres"))
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fodi/core'",
    )
    .fetch_one(&replica)
    .await
    .unwrap();
    assert!(sessions >= 1, "the core pool reads on the replica");

    // The ledger: the balance now and statements from the primary (they show the caller's
    // own transfers at once, and pages continue one another); a past balance from the replica.
    let api = crate::ledger::Api::new(&base);
    let mut wallets = Vec::new();
    for user in &users[..2] {
        let (_, wallet) = api
            .post("/api/v1/ledger/wallets", json!({ "user_id": user["id"] }))
            .await;
        wallets.push(wallet["id"].as_str().unwrap().to_owned());
    }
    let (status, _) = api
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": wallets[0], "amount": "10" }),
        )
        .await;
    assert_eq!(status, 201);
    for amount in ["1", "2"] {
        let (status, _) = api
            .post(
                "/api/v1/ledger/transfers",
                json!({ "debit": wallets[0], "credit": wallets[1], "amount": amount }),
            )
            .await;
        assert_eq!(status, 201);
    }
    let (_, now) = get(&format!("/api/v1/ledger/wallets/{}/balance", wallets[1])).await;
    assert_eq!(
        now["posted"], "3000000000",
        "the caller's own transfers, at once"
    );
    let (_, first_page) = get(&format!(
        "/api/v1/ledger/wallets/{}/statement?limit=1",
        wallets[1]
    ))
    .await;
    assert_eq!(first_page["entries"].as_array().unwrap().len(), 1);
    wait_for("the ledger's reads go to the replica", || async {
        pools.ledger.reads_from_replica()
    })
    .await;
    let ledger_query_on_replica = async |text: &str| -> bool {
        let queries: Vec<String> = sqlx::query_scalar(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'fodi/ledger'",
        )
        .fetch_all(&replica)
        .await
        .unwrap();
        queries.iter().any(|query| query.contains(text))
    };
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, past) = client
        .get(format!(
            "{base}/api/v1/ledger/wallets/{}/balance",
            wallets[1]
        ))
        .query(&[("at", an_hour_ago.as_str())])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|body| (200, body))
        .unwrap();
    assert_eq!((status, &past["posted"]), (200, &json!("0")), "{past}");
    assert!(
        ledger_query_on_replica("history_horizon").await,
        "the past balance was read on the replica"
    );
    // A deeper page continues the first, on the primary.
    let before = first_page["next_before"].as_i64().unwrap();
    let (status, deeper) = get(&format!(
        "/api/v1/ledger/wallets/{}/statement?limit=1&before={before}",
        wallets[1]
    ))
    .await;
    assert_eq!(status, 200, "{deeper}");
    assert_eq!(deeper["entries"][0]["amount"], "1000000000", "{deeper}");

    // A wallet opened after the moment asked for, not on the replica yet (its replay paused):
    // its past balance is 0, read again on the primary, not "no such wallet".
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let (_, late) = api
        .post(
            "/api/v1/ledger/wallets",
            json!({ "user_id": users[2]["id"] }),
        )
        .await;
    let late = late["id"].as_str().unwrap().to_owned();
    let on_replica: i64 =
        sqlx::query_scalar("SELECT count(*) FROM blockchain.wallets WHERE id = $1::uuid")
            .bind(&late)
            .fetch_one(&replica)
            .await
            .unwrap();
    assert_eq!(on_replica, 0, "the replica has not replayed the new wallet");
    let (status, past) = get(&format!(
        "/api/v1/ledger/wallets/{late}/balance?at={}",
        an_hour_ago.replace('+', "%2B")
    ))
    .await;
    assert_eq!((status, &past["posted"]), (200, &json!("0")), "{past}");
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .unwrap();
    replica.close().await;

    clusters.stop_replica();
    wait_for("reads leave the stopped replica", || async {
        !pools.core.reads_from_replica()
    })
    .await;
    for user in &users {
        let (status, read) = get(&format!("/api/v1/users/{}", user["id"].as_str().unwrap())).await;
        assert_eq!((status, &read), (200, user));
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
