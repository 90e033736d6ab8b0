//! A deep statement page and a balance at a past moment read a bounded part of a long history:
//! checked by counting, with EXPLAIN ANALYZE, the rows each read takes from the transfers.

use chrono::{DateTime, Utc};
use db_core::migrate::core_set;
use db_core::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use db_core::testing::TestDb;
use serde_json::Value;

use super::history::{BALANCE_AT_SQL, CHECKPOINT_EVERY, STATEMENT_SQL};
use crate::{
    Amount, Asset, BatchMode, Issuance, Ledger, LedgerConfig, PgLedger, TransferRequest, WalletId,
};

/// Rows the plan's nodes read from `blockchain.fodi_transactions`, kept or filtered out.
fn transfer_rows_read(node: &Value) -> f64 {
    let own = if node["Relation Name"] == "fodi_transactions" {
        let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
        let kept = node["Actual Rows"].as_f64().unwrap_or(0.0);
        let removed = node["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
            + node["Rows Removed by Index Recheck"]
                .as_f64()
                .unwrap_or(0.0);
        (kept + removed) * loops
    } else {
        0.0
    };
    let children = node["Plans"].as_array().map_or(0.0, |plans| {
        plans.iter().map(transfer_rows_read).sum::<f64>()
    });
    own + children
}

/// Rows `sql` reads from the transfers, planned as for a large table: with the few rows of a
/// test, the planner would rather read a wallet's every entry and sort them.
async fn rows_read(db: &TestDb, sql: &str) -> f64 {
    let mut connection = PgConnection::connect_with(&db.connect_options())
        .await
        .unwrap();
    sqlx::raw_sql("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .execute(&mut connection)
        .await
        .unwrap();
    let explained: Value = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {sql}"
    )))
    .fetch_one(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();
    transfer_rows_read(&explained[0]["Plan"])
}

fn literal(wallet: WalletId) -> String {
    format!("'{}'::uuid", wallet.as_uuid())
}

fn moment(at: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", at.to_rfc3339())
}

/// Settles until every entry written so far is settled, as the settler's job does within a
/// run or two (longer while other transactions of the cluster are older than its mark).
async fn settle_everything(ledger: &PgLedger, db: &TestDb) {
    let newest: i64 =
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM blockchain.fodi_transactions")
            .fetch_one(db.pool())
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let settled: i64 = sqlx::query_scalar("SELECT settled_seq FROM blockchain.history_horizon")
            .fetch_one(db.pool())
            .await
            .unwrap();
        if settled >= newest {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never settled");
        ledger.settle_history(100_000).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn deep_reads_take_a_bounded_part_of_a_long_history() {
    const ROUNDS: usize = 8;
    const PER_ROUND: usize = 500;
    let db = TestDb::new(vec![core_set(), crate::migration_set()]).await;
    let ledger = PgLedger::new(db.db(), LedgerConfig::default());
    let fodi = Asset::fodi();
    let alice = ledger
        .open_user_wallet(db.user().await, &fodi)
        .await
        .unwrap();
    let bob = ledger
        .open_user_wallet(db.user().await, &fodi)
        .await
        .unwrap();
    for wallet in [alice.id, bob.id] {
        ledger
            .issue(Issuance::new(wallet, Amount::new(1_000_000).unwrap()))
            .await
            .unwrap();
    }

    // Rounds of transfers with the settler running between them, as its job does.
    let mut moments = Vec::new();
    for round in 0..ROUNDS {
        let requests = (0..PER_ROUND)
            .map(|i| {
                let (from, to) = if i % 3 == 0 {
                    (bob.id, alice.id)
                } else {
                    (alice.id, bob.id)
                };
                TransferRequest::transfer(
                    from,
                    to,
                    Amount::new(1 + (round + i) as i64 % 5).unwrap(),
                )
            })
            .collect();
        for result in ledger
            .submit(requests, BatchMode::Independent)
            .await
            .unwrap()
        {
            result.unwrap();
        }
        settle_everything(&ledger, &db).await;
        moments.push(Utc::now());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let history = (ROUNDS * PER_ROUND) as f64;
    let bound = f64::from(CHECKPOINT_EVERY) + 2.0 * 50.0;

    let newest: i64 = sqlx::query_scalar("SELECT max(seq) FROM blockchain.fodi_transactions")
        .fetch_one(db.pool())
        .await
        .unwrap();
    for before in [newest / 4, newest / 2, newest - 10] {
        let sql = STATEMENT_SQL
            .replace("$1", &literal(alice.id))
            .replace("$2", &format!("{before}::bigint"))
            .replace("$3", "50");
        let read = rows_read(&db, &sql).await;
        assert!(
            read <= bound,
            "a statement page before seq {before} read {read} of {history} entries"
        );
    }
    for at in [moments[1], moments[ROUNDS / 2], moments[ROUNDS - 2]] {
        let sql = BALANCE_AT_SQL
            .replace("$1", &literal(alice.id))
            .replace("$2", &moment(at));
        let read = rows_read(&db, &sql).await;
        assert!(
            read <= bound,
            "the balance at {at} read {read} of {history} entries"
        );
    }
    db.close().await;
}
