//! The real `migrator` binary as CI runs it: exit codes, JSON, concurrency, clear errors.

use std::process::{Command, Output};

use db_core::sqlx;
use db_core::testing::TestDb;
use serde_json::Value;

const MIGRATOR: &str = env!("CARGO_BIN_EXE_migrator");

fn total_migrations() -> usize {
    migrator::all_sets()
        .iter()
        .map(|set| set.migrations().len())
        .sum()
}

fn migrator(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(MIGRATOR);
    command
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FODI__DATABASE__URL");
    command
}

pub(crate) async fn run(url: &str, args: &[&str]) -> Output {
    let mut command = migrator(url, args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

pub(crate) fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn up_applies_every_set_then_nothing_and_verify_agrees() {
    let db = TestDb::empty().await;
    let url = db.url();

    let before = run(&url, &["--json", "verify"]).await;
    assert_eq!(
        before.status.code(),
        Some(2),
        "pending migrations fail the gate"
    );
    assert_eq!(json(&before)["current"], false);

    let first = run(&url, &["--json", "up"]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let report = json(&first);
    assert_eq!(report["applied_count"], total_migrations());
    let order: Vec<&str> = report["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|set| set["set"].as_str().unwrap())
        .collect();
    assert_eq!(
        order[0], "core",
        "core is applied before the sets that reference it"
    );

    let second = run(&url, &["--json", "up"]).await;
    assert!(second.status.success());
    assert_eq!(json(&second)["applied_count"], 0);

    let after = run(&url, &["verify"]).await;
    assert_eq!(
        after.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    assert!(String::from_utf8_lossy(&after.stdout).contains("verify: ok"));
}

#[tokio::test]
async fn four_migrators_started_at_once_all_exit_0_and_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            migrator(&db.url(), &["--json", "up"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = tokio::task::spawn_blocking(move || {
        children
            .drain(..)
            .map(|child| child.wait_with_output().unwrap())
            .collect()
    })
    .await
    .unwrap();
    let mut applied = 0;
    for output in &outputs {
        assert!(
            output.status.success(),
            "a concurrent migrator failed: {}",
            stderr(output)
        );
        applied += json(output)["applied_count"].as_u64().unwrap();
    }
    assert_eq!(
        applied as usize,
        total_migrations(),
        "each migration applied by exactly one migrator"
    );
    for set in migrator::all_sets() {
        let recorded: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            set.history_table()
        )))
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(
            recorded as usize,
            set.migrations().len(),
            "history of {}",
            set.name()
        );
    }
}

#[tokio::test]
async fn an_edited_migration_stops_up_with_exit_1_and_fails_verify() {
    let db = TestDb::empty().await;
    let url = db.url();
    assert!(run(&url, &["up"]).await.status.success());
    // What a database looks like after a released migration file was edited: the recorded
    // checksum no longer matches the file's.
    sqlx::query("UPDATE ai.refinery_schema_history SET checksum = '42' WHERE version = 1")
        .execute(db.pool())
        .await
        .unwrap();

    let up = run(&url, &["--json", "up"]).await;
    assert_eq!(up.status.code(), Some(1));
    let error = &json(&up)["error"];
    assert_eq!(error["kind"], "drift");
    assert_eq!(error["drift"][0]["set"], "ai");
    assert_eq!(error["drift"][0]["version"], 1);
    assert_eq!(error["drift"][0]["kind"], "edited");

    let text = run(&url, &["up"]).await;
    assert!(
        stderr(&text).contains("set ai: V1__ai_tables was edited after it was applied"),
        "{}",
        stderr(&text)
    );

    let verify = run(&url, &["verify"]).await;
    assert_eq!(verify.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("DRIFT"));
}

#[tokio::test]
async fn dry_run_lists_the_plan_and_changes_nothing() {
    let db = TestDb::empty().await;
    let schemas = || async {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT nspname::text FROM pg_namespace ORDER BY 1")
                .fetch_all(db.pool())
                .await
                .unwrap();
        names
    };
    let before = schemas().await;
    let output = run(&db.url(), &["up", "--dry-run"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("would apply blockchain V1__ledger_tables"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(schemas().await, before);
}

#[tokio::test]
async fn a_selected_set_with_a_target_applies_just_that() {
    let db = TestDb::empty().await;
    let output = run(
        &db.url(),
        &["--json", "up", "--set", "core", "--target", "1"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["sets"].as_array().unwrap().len(), 1);
    let status = json(&run(&db.url(), &["--json", "status"]).await);
    let pending: Vec<&str> = status["sets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|set| !set["pending"].as_array().unwrap().is_empty())
        .map(|set| set["set"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["ai", "blockchain", "analytics"]);
}

#[tokio::test]
async fn bad_arguments_exit_1_with_the_reason() {
    let db = TestDb::empty().await;
    let ambiguous = run(&db.url(), &["up", "--target", "1"]).await;
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(
        stderr(&ambiguous).contains("needs exactly one set"),
        "{}",
        stderr(&ambiguous)
    );

    let unknown = run(&db.url(), &["--json", "status", "--set", "ledgr"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(json(&unknown)["error"]["kind"], "invalid_arguments");
    assert!(
        json(&unknown)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("core, ai, blockchain, analytics")
    );

    let usage = run(&db.url(), &["frobnicate"]).await;
    assert_eq!(
        usage.status.code(),
        Some(1),
        "usage errors are 1; 2 is reserved for verify"
    );
}

#[tokio::test]
async fn unreachable_and_wrong_databases_are_explained() {
    let unreachable = run("postgres://fodi:secret@127.0.0.1:1/fodi", &["status"]).await;
    assert_eq!(unreachable.status.code(), Some(1));
    let message = stderr(&unreachable);
    assert!(
        message.contains("cannot reach PostgreSQL at 127.0.0.1:1/fodi"),
        "{message}"
    );
    assert!(message.contains("hint: is the server running"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password never appears: {message}"
    );

    let db = TestDb::empty().await;
    let missing = db.url().replace(db.name(), "no_such_database");
    let output = run(&missing, &["--json", "status"]).await;
    assert_eq!(json(&output)["error"]["kind"], "database_missing");

    let wrong_user = db
        .url()
        .replace("postgres://postgres@", "postgres://nobody@");
    let output = run(&wrong_user, &["--json", "status"]).await;
    assert_eq!(
        json(&output)["error"]["kind"],
        "authentication_failed",
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test]
async fn without_a_url_the_embedded_cluster_is_started_migrated_and_stopped() {
    let workdir = tempfile::tempdir().unwrap();
    let run_in_workdir = |args: &'static [&'static str]| {
        let mut command = Command::new(MIGRATOR);
        command
            .args(args)
            .current_dir(workdir.path())
            .env_remove("DATABASE_URL")
            .env_remove("FODI__DATABASE__URL")
            // Outside CI: there, no URL is an error (the next test).
            .env_remove("CI");
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let up = run_in_workdir(&["--json", "up"]).await.unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(json(&up)["applied_count"], total_migrations());
    let data_dir = workdir.path().join(".data/pg/data");
    assert!(
        data_dir.join("PG_VERSION").exists(),
        "the cluster lives under ./.data/pg"
    );
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "the migrator stops the cluster it started"
    );

    let verify = run_in_workdir(&["verify"]).await.unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "the same cluster is reused: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[tokio::test]
async fn the_configuration_can_leave_out_a_set() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fodi.toml");
    std::fs::write(
        &config,
        "[migrations]\nsets = [\"core\", \"ai\"]\napply_on_start = true\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let output = run(&db.url(), &["--json", "--config", config, "up"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let sets: Vec<String> = json(&output)["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|set| set["set"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sets, ["core", "ai"]);
    let verify = run(&db.url(), &["--config", config, "verify"]).await;
    assert_eq!(
        verify.status.code(),
        Some(0),
        "only the configured sets are checked"
    );
}

/// A migrator built without the `sled-import` feature says which feature `import-sled` needs,
/// and says it before touching any database (this URL points nowhere).
#[cfg(not(feature = "sled-import"))]
#[tokio::test]
async fn import_sled_without_its_feature_names_the_feature() {
    let output = run(
        "postgres://nobody@127.0.0.1:1/nowhere",
        &["import-sled", "/nonexistent"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("built without the `sled-import` feature"),
        "{message}"
    );
}

#[tokio::test]
async fn up_over_tls_to_a_server_that_requires_it_and_a_clear_refusal_otherwise() {
    let server = db_core::testing::tls::TlsCluster::start(true).await;
    let ca = server.ca_file().display().to_string();

    let verified = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let up = run(&verified, &["--json", "up"]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(json(&up)["applied_count"], total_migrations());
    let required = server.url("127.0.0.1", "sslmode=require");
    let verify = run(&required, &["--json", "verify"]).await;
    assert!(verify.status.success(), "{}", stderr(&verify));

    // A CA that did not issue the server's certificate: refused, saying TLS and why.
    let other = server.other_ca_file().display().to_string();
    let wrong = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    let refused = run(&wrong, &["--json", "verify"]).await;
    assert!(!refused.status.success());
    let report = json(&refused);
    assert_eq!(report["error"]["kind"], "tls_failed", "{report}");
    let message = report["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("TLS") && message.contains("UnknownIssuer"),
        "{report}"
    );
}

#[tokio::test]
async fn in_ci_or_when_asked_no_url_is_an_error_not_the_embedded_cluster() {
    let workdir = tempfile::tempdir().unwrap();
    for (ci, flag) in [(Some("true"), None), (None, Some("--require-database-url"))] {
        let mut command = Command::new(MIGRATOR);
        command
            .args(flag)
            .args(["verify"])
            .current_dir(workdir.path())
            .env_remove("DATABASE_URL")
            .env_remove("FODI__DATABASE__URL")
            .env_remove("CI");
        if let Some(value) = ci {
            command.env("CI", value);
        }
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("no database url"),
            "{}",
            stderr(&output)
        );
        assert!(
            !workdir.path().join(".data").exists(),
            "no embedded cluster was made"
        );
    }
}

#[tokio::test]
async fn a_migrator_waiting_for_another_says_which_and_gives_up_after_its_lock_timeout() {
    let db = TestDb::empty().await;
    // Another migrator's session: it holds the migration lock.
    let mut holder = db_core::connect(&db.url().parse().unwrap()).await.unwrap();
    let lock = sqlx::postgres::PgAdvisoryLock::new(db_core::migrate::MIGRATION_LOCK);
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let guard = lock.acquire(&mut holder).await.unwrap();

    let started = std::time::Instant::now();
    let output = run(&db.url(), &["--lock-timeout", "1s", "up"]).await;
    assert!(!output.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let message = stderr(&output);
    assert!(
        message.contains("another migrator holds the migration lock")
            && message.contains(&holder_pid.to_string()),
        "{message}"
    );
    assert!(message.contains("lock"), "{message}");
    guard.release_now().await.unwrap();
    let after = run(&db.url(), &["--json", "up"]).await;
    assert!(after.status.success(), "{}", stderr(&after));
}
