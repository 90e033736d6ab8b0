//! The migration runner against a real server: ordering, locking, drift, dry runs, failures.

use std::sync::Arc;

use db_core::migrate::{DriftKind, MigrateError, Migrator, UpOptions, core_set};
use db_core::sqlx::{self, Connection, PgConnection};
use db_core::testing::TestDb;
use tokio::sync::Barrier;

use crate::support::{history, relation_exists, set, snapshot};

async fn connect(db: &TestDb) -> PgConnection {
    PgConnection::connect_with(&db.connect_options())
        .await
        .unwrap()
}

fn demo_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "V1__accounts",
            "CREATE TABLE demo.accounts (id int PRIMARY KEY, owner uuid REFERENCES public.users (id));",
        ),
        (
            "V2__notes",
            "CREATE TABLE demo.notes (id int PRIMARY KEY, body text NOT NULL);",
        ),
        (
            "V3__notes_index",
            "CREATE INDEX notes_body_idx ON demo.notes (body);",
        ),
    ]
}

#[tokio::test]
async fn a_fresh_database_gets_every_set_and_a_second_run_applies_nothing() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    let migrator = Migrator::new(vec![
        set("demo", &demo_files()).depends_on(&["core"]),
        core_set(),
    ])
    .unwrap();

    let first = migrator
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    let order: Vec<&str> = first.sets.iter().map(|run| run.set.as_str()).collect();
    assert_eq!(order, ["core", "demo"], "dependencies are applied first");
    assert_eq!(first.applied_count(), core_set().migrations().len() + 3);
    assert!(relation_exists(&mut connection, "demo.notes_body_idx").await);
    assert_eq!(history(&mut connection, "demo").await, [1, 2, 3]);

    let second = migrator
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    assert_eq!(second.applied_count(), 0);
    let statuses = migrator.status(&mut connection).await.unwrap();
    assert!(statuses.iter().all(|status| status.is_current()));
}

#[tokio::test]
async fn migrators_started_at_once_all_succeed_and_apply_each_migration_once() {
    const MIGRATORS: usize = 8;
    let db = TestDb::empty().await;
    let migrator = Migrator::new(vec![
        core_set(),
        set("demo", &demo_files()).depends_on(&["core"]),
    ])
    .unwrap();
    let barrier = Arc::new(Barrier::new(MIGRATORS));
    let mut runs = Vec::new();
    for _ in 0..MIGRATORS {
        let (migrator, barrier, options) =
            (migrator.clone(), barrier.clone(), db.connect_options());
        runs.push(tokio::spawn(async move {
            let mut connection = PgConnection::connect_with(&options).await.unwrap();
            barrier.wait().await;
            migrator.up(&mut connection, UpOptions::default()).await
        }));
    }
    let mut applied = 0;
    for run in runs {
        applied += run
            .await
            .unwrap()
            .expect("every concurrent migrator succeeds")
            .applied_count();
    }
    let expected = core_set().migrations().len() + 3;
    assert_eq!(
        applied, expected,
        "each migration was applied by exactly one migrator"
    );
    let mut connection = connect(&db).await;
    assert_eq!(history(&mut connection, "demo").await, [1, 2, 3]);
}

#[tokio::test]
async fn an_edited_migration_is_refused_and_nothing_changes() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    let released = Migrator::new(vec![core_set(), set("demo", &demo_files()[..2])]).unwrap();
    released
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    let before = snapshot(&mut connection).await;

    let mut edited_files = demo_files();
    edited_files[1].1 = "CREATE TABLE demo.notes (id int PRIMARY KEY, body text);"; // NOT NULL dropped
    let edited = Migrator::new(vec![core_set(), set("demo", &edited_files)]).unwrap();
    let error = edited
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap_err();

    let MigrateError::Drift(drift) = &error else {
        panic!("expected drift, got {error:?}")
    };
    assert_eq!(drift.len(), 1);
    assert_eq!((drift[0].set.as_str(), drift[0].version), ("demo", 2));
    assert!(matches!(drift[0].kind, DriftKind::Edited { .. }));
    assert!(
        error
            .to_string()
            .contains("V2__notes was edited after it was applied"),
        "{error}"
    );
    assert_eq!(
        snapshot(&mut connection).await,
        before,
        "V3 was not applied, nothing changed"
    );
    assert!(!relation_exists(&mut connection, "demo.notes_body_idx").await);
}

#[tokio::test]
async fn a_migration_deleted_from_the_build_is_drift_a_newer_one_is_not() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    Migrator::new(vec![core_set(), set("demo", &demo_files())])
        .unwrap()
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    let files = demo_files();
    let deleted = Migrator::new(vec![core_set(), set("demo", &[files[0], files[2]])]).unwrap();
    let statuses = deleted.status(&mut connection).await.unwrap();
    let demo = statuses.iter().find(|status| status.set == "demo").unwrap();
    assert_eq!(
        demo.drift[0].kind,
        DriftKind::MissingLocally {
            applied_name: "notes".into()
        }
    );
    assert!(matches!(
        deleted.up(&mut connection, UpOptions::default()).await,
        Err(MigrateError::Drift(_))
    ));

    // The build before the last migration (a rolling deploy: the next release migrated).
    let older_build = Migrator::new(vec![core_set(), set("demo", &files[..2])]).unwrap();
    let statuses = older_build.status(&mut connection).await.unwrap();
    let demo = statuses.iter().find(|status| status.set == "demo").unwrap();
    assert!(demo.is_current(), "{:?}", demo.drift);
    assert_eq!(demo.ahead.len(), 1);
    assert_eq!(demo.ahead[0].name, "notes_index");
    let report = older_build
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    assert_eq!(report.applied_count(), 0);
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    let before = snapshot(&mut connection).await;
    let migrator = Migrator::new(vec![core_set(), set("demo", &demo_files())]).unwrap();

    let plan = migrator
        .up(
            &mut connection,
            UpOptions {
                dry_run: true,
                target: None,
            },
        )
        .await
        .unwrap();

    assert!(plan.dry_run);
    assert_eq!(plan.applied_count(), core_set().migrations().len() + 3);
    assert_eq!(snapshot(&mut connection).await, before);
    assert!(!relation_exists(&mut connection, "demo.refinery_schema_history").await);
}

#[tokio::test]
async fn a_failing_migration_leaves_its_set_exactly_as_before_it() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    Migrator::new(vec![core_set(), set("demo", &demo_files()[..1])])
        .unwrap()
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    let before = snapshot(&mut connection).await;

    let failing = set(
        "demo",
        &[
            demo_files()[0],
            // Half way: the first statement succeeds, the second fails.
            (
                "V2__half_way",
                "CREATE TABLE demo.half (id int); INSERT INTO demo.no_such_table VALUES (1);",
            ),
            ("V3__after", "CREATE TABLE demo.after (id int);"),
        ],
    );
    let error = Migrator::new(vec![core_set(), failing])
        .unwrap()
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap_err();

    let MigrateError::Failed {
        set,
        migration,
        sqlstate,
        applied_before,
        ..
    } = &error
    else {
        panic!("expected a failed migration, got {error:?}")
    };
    assert_eq!((set.as_str(), migration.as_str()), ("demo", "V2__half_way"));
    assert_eq!(
        sqlstate.as_deref(),
        Some("42P01"),
        "undefined_table, from the server"
    );
    assert!(applied_before.is_empty());
    assert_eq!(snapshot(&mut connection).await, before);
    assert!(!relation_exists(&mut connection, "demo.half").await);
    assert!(
        !relation_exists(&mut connection, "demo.after").await,
        "later migrations are not attempted"
    );
}

#[tokio::test]
async fn a_target_applies_up_to_that_version_and_never_reverts() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    let migrator = Migrator::new(vec![core_set(), set("demo", &demo_files())]).unwrap();
    migrator
        .select(&["core"])
        .unwrap()
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    let demo = migrator.select(&["demo"]).unwrap();

    let report = demo
        .up(
            &mut connection,
            UpOptions {
                target: Some(2),
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.applied_count(), 2);
    assert_eq!(history(&mut connection, "demo").await, [1, 2]);

    let below = demo
        .up(
            &mut connection,
            UpOptions {
                target: Some(1),
                dry_run: false,
            },
        )
        .await;
    assert!(
        matches!(
            below,
            Err(MigrateError::TargetBelowApplied {
                applied: 2,
                target: 1,
                ..
            })
        ),
        "{below:?}"
    );
    let ambiguous = migrator
        .up(
            &mut connection,
            UpOptions {
                target: Some(1),
                dry_run: false,
            },
        )
        .await;
    assert!(
        matches!(ambiguous, Err(MigrateError::TargetNeedsOneSet { count: 2 })),
        "{ambiguous:?}"
    );
}

#[tokio::test]
async fn status_reads_without_writing_and_up_releases_its_lock() {
    let db = TestDb::empty().await;
    let mut connection = connect(&db).await;
    let before = snapshot(&mut connection).await;
    let migrator = Migrator::new(vec![core_set()]).unwrap();
    let statuses = migrator.status(&mut connection).await.unwrap();
    assert_eq!(statuses[0].pending.len(), core_set().migrations().len());
    assert_eq!(snapshot(&mut connection).await, before);

    migrator
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    // Advisory locks are per database; other tests hold theirs in their own databases.
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        held, 0,
        "a finished up leaves no lock behind on its connection"
    );
    connection.close().await.unwrap();
}
