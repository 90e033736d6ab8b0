//! Each query of the request path can be answered from an index: checked with EXPLAIN, with
//! sequential scans disabled so that the check is about what the indexes allow, not about what
//! the planner prefers for the few rows of a test database.

use db_core::migrate::core_set;
use db_core::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use db_core::testing::TestDb;
use uuid::Uuid;

async fn plan(
    connection: &mut PgConnection,
    sql: &str,
    bind: impl FnOnce(&str) -> String,
) -> String {
    // EXPLAIN takes no parameters of its own: bind them as literals of the right types.
    let explained = format!("EXPLAIN {}", bind(sql));
    let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(explained))
        .fetch_all(connection)
        .await
        .unwrap();
    lines.join("\n")
}

fn literal(uuid: Uuid) -> String {
    format!("'{uuid}'::uuid")
}

#[tokio::test]
async fn request_path_queries_use_indexes() {
    let db = TestDb::new(vec![core_set(), crate::migration_set()]).await;
    let mut connection = PgConnection::connect_with(&db.connect_options())
        .await
        .unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut connection)
        .await
        .unwrap();
    let wallet = literal(Uuid::now_v7());

    let statement = plan(&mut connection, super::history::STATEMENT_SQL, |sql| {
        sql.replace("$1", &wallet)
            .replace("$2", "NULL::bigint")
            .replace("$3", "50")
    })
    .await;
    for index in [
        "fodi_transactions_debit_idx",
        "fodi_transactions_credit_idx",
    ] {
        assert!(
            statement.contains(index),
            "statement does not use {index}:\n{statement}"
        );
    }

    let feed = plan(
        &mut connection,
        &super::feed::final_transfers_sql(),
        |sql| {
            sql.replace("$1", "100")
                .replace("$2", "5")
                .replace("$3", "1000")
        },
    )
    .await;
    assert!(
        feed.contains("fodi_transactions_position_idx"),
        "feed and sealer:\n{feed}"
    );

    let due = plan(&mut connection, super::DUE_HOLDS_SQL, |sql| {
        sql.replace("$1", "100")
    })
    .await;
    assert!(
        due.contains("pending_holds_expires_at_idx"),
        "expiry sweep:\n{due}"
    );

    let user = literal(Uuid::now_v7());
    let rewards = plan(&mut connection, super::rewards::REWARDS_OF_SQL, |sql| {
        sql.replace("$1", &user).replace("$2", "50")
    })
    .await;
    assert!(
        rewards.contains("reward_history_user_created_idx"),
        "rewards of a user:\n{rewards}"
    );

    let nfts = plan(&mut connection, &super::nfts::nfts_of_sql(), |sql| {
        sql.replace("$1", &user)
    })
    .await;
    assert!(
        nfts.contains("nft_metadata_owner_id_idx"),
        "NFTs of an owner:\n{nfts}"
    );
    connection.close().await.unwrap();
}
