//! Daily partitions: created ahead, strays moved out of the default partition, whole
//! partitions dropped by retention.

use analytics::partitions;
use analytics::{Analytics, PartitionConfig, PgAnalytics};
use chrono::{Days, NaiveDate, Utc};
use db_core::sqlx;

use crate::support::Fixture;

async fn rows_in(fx: &Fixture, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM ONLY analytics.{table}"
    )))
    .fetch_one(fx.db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_whole_by_retention() {
    let fx = Fixture::new().await;
    let analytics = PgAnalytics::new(
        fx.db.db(),
        PartitionConfig {
            days_ahead: 3,
            retention_days: 30,
        },
    );
    let today = Utc::now().date_naive();
    let day = |offset: i64| {
        if offset >= 0 {
            today.checked_add_days(Days::new(offset as u64)).unwrap()
        } else {
            today
                .checked_sub_days(Days::new(offset.unsigned_abs()))
                .unwrap()
        }
    };

    // A row for a day without a partition waits in the default partition.
    sqlx::query("INSERT INTO analytics.events (time, kind) VALUES ($1, 'early')")
        .bind(day(1).and_hms_opt(12, 0, 0).unwrap().and_utc())
        .execute(fx.db.pool())
        .await
        .unwrap();
    assert_eq!(rows_in(&fx, "events_default").await, 1);

    let report = analytics.maintain_partitions().await.unwrap();
    // Yesterday, today and three days ahead, for both tables.
    assert_eq!(report.created, 2 * 5, "{report:?}");
    let expected: Vec<NaiveDate> = (-1..=3).map(day).collect();
    assert_eq!(
        partitions::days(&fx.db.db(), "events").await.unwrap(),
        expected
    );
    assert_eq!(
        partitions::days(&fx.db.db(), "metrics").await.unwrap(),
        expected
    );
    let moved: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM analytics.events_p{} WHERE kind = 'early'",
        day(1).format("%Y%m%d")
    )))
    .fetch_one(fx.db.pool())
    .await
    .unwrap();
    assert_eq!(moved, 1, "the stray row moved into its new partition");
    assert_eq!(rows_in(&fx, "events_default").await, 0);
    assert_eq!(
        analytics.maintain_partitions().await.unwrap().created,
        0,
        "idempotent"
    );

    // A backfill of days past retention, with a stray row of a day without a partition.
    analytics.create_partitions(day(-40), 5).await.unwrap();
    sqlx::query("INSERT INTO analytics.events (time, kind) VALUES ($1, 'old'), ($2, 'older')")
        .bind(day(-40).and_hms_opt(12, 0, 0).unwrap().and_utc())
        .bind(day(-45).and_hms_opt(12, 0, 0).unwrap().and_utc())
        .execute(fx.db.pool())
        .await
        .unwrap();
    assert_eq!(
        rows_in(&fx, "events_default").await,
        1,
        "the older row is a stray"
    );
    let report = analytics.maintain_partitions().await.unwrap();
    assert_eq!(report.dropped, 2 * 5, "{report:?}");
    assert_eq!(
        partitions::days(&fx.db.db(), "events").await.unwrap(),
        expected
    );
    assert_eq!(fx.count("SELECT count(*) FROM analytics.events").await, 1);
    assert_eq!(
        rows_in(&fx, "events_default").await,
        0,
        "strays past retention are gone"
    );
}

#[tokio::test]
async fn two_maintainers_at_once_create_each_partition_once() {
    let fx = Fixture::new().await;
    let (first, second) = tokio::join!(
        fx.analytics.maintain_partitions(),
        fx.analytics.maintain_partitions()
    );
    let created = first.unwrap().created + second.unwrap().created;
    assert_eq!(created, 2 * (PartitionConfig::default().days_ahead + 2));
}

#[tokio::test]
async fn only_the_schema_s_partitioned_tables_are_accepted() {
    let fx = Fixture::new().await;
    let refused =
        sqlx::query("SELECT analytics.create_daily_partitions('metric_series', current_date, 1)")
            .execute(fx.db.pool())
            .await
            .unwrap_err();
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|error| error.code())
            .as_deref(),
        Some("22023")
    );
    assert!(
        partitions::create(&fx.db.db(), Utc::now().date_naive(), 400)
            .await
            .is_err()
    );
}
