//! Daily partitions of `analytics.metrics` and `analytics.events`: created ahead of time
//! (rows for a day without one land in the default partition, and move into it when it is
//! created), dropped whole for retention. The work is done by the schema's functions
//! `analytics.create_daily_partitions` and `analytics.drop_daily_partitions`.

use chrono::NaiveDate;
use db_core::Db;
use serde::Serialize;

use crate::error::{AnalyticsError, invalid};

/// The partitioned tables.
pub const TABLES: [&str; 2] = ["metrics", "events"];

/// What a maintenance run did, over both tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub created: u32,
    pub dropped: u32,
}

/// Creates the partitions of both tables for `days` days from `first_day` that do not exist.
pub async fn create(db: &Db, first_day: NaiveDate, days: u32) -> Result<u32, AnalyticsError> {
    if days > 366 {
        return Err(invalid("days", "at most 366"));
    }
    let mut created = 0;
    let mut unit = db.unit(db.primary()).await?;
    for table in TABLES {
        let count: i32 = sqlx::query_scalar("SELECT analytics.create_daily_partitions($1, $2, $3)")
            .bind(table)
            .bind(first_day)
            .bind(days as i32)
            .fetch_one(&mut *unit)
            .await?;
        created += count.unsigned_abs();
    }
    unit.finish().await?;
    Ok(created)
}

/// Drops the partitions of both tables for days before `before_day`.
pub async fn drop_before(db: &Db, before_day: NaiveDate) -> Result<u32, AnalyticsError> {
    let mut dropped = 0;
    let mut unit = db.unit(db.primary()).await?;
    for table in TABLES {
        let count: i32 = sqlx::query_scalar("SELECT analytics.drop_daily_partitions($1, $2)")
            .bind(table)
            .bind(before_day)
            .fetch_one(&mut *unit)
            .await?;
        dropped += count.unsigned_abs();
    }
    unit.finish().await?;
    Ok(dropped)
}

/// The daily partitions of `table`, oldest first.
pub async fn days(db: &Db, table: &str) -> Result<Vec<NaiveDate>, AnalyticsError> {
    if !TABLES.contains(&table) {
        return Err(invalid("table", "metrics or events"));
    }
    let mut unit = db.unit(db.read()).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT child.relname::text FROM pg_inherits
           JOIN pg_class child ON child.oid = pg_inherits.inhrelid
          WHERE pg_inherits.inhparent = ('analytics.' || $1)::regclass
            AND child.relname ~ ($1 || '_p[0-9]{8}$')
          ORDER BY 1",
    )
    .bind(table)
    .fetch_all(&mut *unit)
    .await?;
    unit.finish().await?;
    Ok(names
        .iter()
        .filter_map(|name| {
            NaiveDate::parse_from_str(&name[name.len().saturating_sub(8)..], "%Y%m%d").ok()
        })
        .collect())
}
