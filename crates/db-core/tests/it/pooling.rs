//! Through a real PgBouncer in transaction mode: units and transactions get the right answers
//! under concurrency (a statement outside a transaction may get another client's), act as the
//! part's role with the statement timeout, and the traffic is PgBouncer's (`SHOW STATS`).

use std::time::Duration;

use db_core::sqlx;
use db_core::testing::TestDb;
use db_core::testing::pgbouncer::PgBouncer;
use db_core::{Db, DbConfig, DirectPool, Ended, Pooling};

/// A role the test login (a superuser) may act as without creating one.
const ROLE: &str = "pg_read_all_stats";

fn pooled_config(bouncer: &PgBouncer, db: &TestDb) -> DbConfig {
    DbConfig {
        pooling: Pooling::Transaction,
        session_url: Some(db.url()),
        max_connections: 24,
        statement_timeout: Some(Duration::from_millis(4321)),
        application_name: "fodi-pooling-test".into(),
        ..DbConfig::with_url(bouncer.url(db.connect_options().get_username(), db.name()))
    }
}

/// Transactions PgBouncer served for `database`, from `SHOW STATS`.
fn transactions_served(bouncer: &PgBouncer, database: &str) -> u64 {
    bouncer
        .show("STATS")
        .iter()
        .find(|row| row.get("database").map(String::as_str) == Some(database))
        .and_then(|row| row.get("total_xact_count"))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn units_behind_pgbouncer_in_transaction_mode_answer_right_as_the_role() {
    let db = TestDb::empty().await;
    let user = db.connect_options().get_username().to_owned();
    // Two server connections for 24 clients: they must take turns.
    let bouncer = PgBouncer::start(&db.connect_options(), &[&user], 2).await;
    let config = pooled_config(&bouncer, &db);
    config.validate().unwrap();
    let pooled = Db::connect_acting_as(
        &config,
        config.primary_options().unwrap().unwrap(),
        Some(ROLE),
    )
    .await
    .unwrap();

    // Each unit: the role and the timeout of the configuration, whatever server it lands on.
    let mut unit = pooled.unit(pooled.primary()).await.unwrap();
    let (role, timeout): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_setting('statement_timeout')")
            .fetch_one(&mut *unit)
            .await
            .unwrap();
    unit.finish().await.unwrap();
    assert_eq!((role.as_str(), timeout.as_str()), (ROLE, "4321ms"));

    // 24 clients, two kinds of statement each with its own argument: every answer is its own.
    let clients: Vec<_> = (0..24_i32)
        .map(|client| {
            let pooled = pooled.clone();
            tokio::spawn(async move {
                let mut wrong = 0;
                for round in 0..100_i32 {
                    let n = client * 1000 + round;
                    let mut unit = pooled.unit(pooled.primary()).await.unwrap();
                    let sum: i32 = sqlx::query_scalar("SELECT $1::int + 1")
                        .bind(n)
                        .fetch_one(&mut *unit)
                        .await
                        .unwrap();
                    let text: String = sqlx::query_scalar("SELECT $1::text || '!'")
                        .bind(n.to_string())
                        .fetch_one(&mut *unit)
                        .await
                        .unwrap();
                    unit.finish().await.unwrap();
                    let mut transaction = pooled.begin().await.unwrap();
                    let doubled: i64 = sqlx::query_scalar("SELECT $1::bigint * 2")
                        .bind(i64::from(n))
                        .fetch_one(&mut *transaction)
                        .await
                        .unwrap();
                    transaction.commit().await.unwrap();
                    if sum != n + 1 || text != format!("{n}!") || doubled != i64::from(n) * 2 {
                        wrong += 1;
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = 0;
    for client in clients {
        wrong += client.await.unwrap();
    }
    assert_eq!(wrong, 0, "answers of another statement");

    // A private pool on the same Db: its statements too run in a transaction as the role.
    let private = DirectPool::on(&pooled, 2, &[("work_mem", "7MB")]);
    let mut connection = private.acquire().await.unwrap();
    let mut scope = connection.scope().await.unwrap();
    let (role, work_mem): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_setting('work_mem')")
            .fetch_one(&mut *scope)
            .await
            .unwrap();
    assert!(scope.end(Ended::Completed).await.unwrap());
    connection.release();
    assert_eq!((role.as_str(), work_mem.as_str()), (ROLE, "7MB"));
    // A refused statement's transaction is rolled back before the connection goes back: the
    // next caller of that connection (the only idle one) starts clean.
    let mut connection = private.acquire().await.unwrap();
    let mut scope = connection.scope().await.unwrap();
    let refused = sqlx::query("SELECT 1 / $1")
        .bind(0)
        .execute(&mut *scope)
        .await;
    assert!(refused.is_err());
    assert!(scope.end(Ended::Refused).await.unwrap());
    connection.release();
    // Idle, it holds no server connection (a transaction left open would pin one).
    let pinned = bouncer
        .show("POOLS")
        .into_iter()
        .find(|row| row.get("database").map(String::as_str) == Some(db.name()))
        .and_then(|row| row.get("sv_active").cloned());
    assert_eq!(pinned.as_deref(), Some("0"));
    let mut connection = private.acquire().await.unwrap();
    let mut scope = connection.scope().await.unwrap();
    let answer: i32 = sqlx::query_scalar("SELECT $1::int")
        .bind(7)
        .fetch_one(&mut *scope)
        .await
        .unwrap();
    assert!(scope.end(Ended::Completed).await.unwrap());
    connection.release();
    assert_eq!(answer, 7);

    // Session-bound work reaches the server itself: PgBouncer has no backend pid of its own
    // to give, and a session lock outlives transactions there.
    let mut session = db_core::connect(pooled.session_options()).await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(4242)")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(locked);
    let still_held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 \
         AND pid = pg_backend_pid()",
    )
    .fetch_one(&mut session)
    .await
    .unwrap();
    assert_eq!(still_held, 1);

    // The traffic went through PgBouncer: its pool for the database, and at least one
    // transaction per unit and per transaction above.
    let pools = bouncer.show("POOLS");
    assert!(
        pools
            .iter()
            .any(|row| row.get("database").map(String::as_str) == Some(db.name())),
        "no PgBouncer pool for {}: {pools:?}",
        db.name()
    );
    assert!(
        holds_within(Duration::from_secs(5), || {
            transactions_served(&bouncer, db.name()) >= 24 * 200
        })
        .await,
        "PgBouncer served {} transactions",
        transactions_served(&bouncer, db.name())
    );
    pooled.close().await;
    private.shutdown().await;
    db.close().await;
}

#[tokio::test]
async fn transaction_pooling_needs_a_session_url() {
    let config = DbConfig {
        pooling: Pooling::Transaction,
        ..DbConfig::with_url("postgres://fodi@127.0.0.1:6432/fodi")
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.starts_with("session_url must name PostgreSQL itself"),
        "{error}"
    );
}

/// Whether `holds` comes true within `within` (PgBouncer's statistics may trail by its
/// `stats_period`, a second in the fixture).
async fn holds_within(within: Duration, mut holds: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if holds() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
