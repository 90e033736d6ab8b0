//! refinery's async driver traits implemented over a sqlx connection.
//!
//! refinery ships no sqlx driver, and a second PostgreSQL client just for migrations would mean
//! a second connection configuration, a second TLS stack and a second pool. This wrapper lets
//! refinery's `Runner` drive the same `PgConnection` the rest of the crate uses, including
//! the one that holds the migration advisory lock.

use refinery_core::Migration;
use refinery_core::traits::r#async::{AsyncMigrate, AsyncQuery, AsyncTransaction};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A borrowed connection that refinery can migrate. Each `execute` call is one transaction:
/// refinery calls it once per migration with the migration's SQL and its history insert, so a
/// migration and its history row commit or roll back together.
pub(crate) struct SqlxMigrationConnection<'c> {
    connection: &'c mut PgConnection,
}

impl<'c> SqlxMigrationConnection<'c> {
    pub(crate) fn new(connection: &'c mut PgConnection) -> Self {
        Self { connection }
    }
}

impl AsyncTransaction for SqlxMigrationConnection<'_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut transaction = self.connection.begin().await?;
        // Index builds and backfills may outlast the statement_timeout the application's
        // sessions use; a migration is bounded by review, not by a timer.
        sqlx::raw_sql("SET LOCAL statement_timeout = 0")
            .execute(&mut *transaction)
            .await?;
        let mut executed = 0;
        for query in queries {
            // The simple query protocol runs a whole migration file, many statements, at once.
            sqlx::raw_sql(AssertSqlSafe(query))
                .execute(&mut *transaction)
                .await?;
            executed += 1;
        }
        transaction.commit().await?;
        Ok(executed)
    }
}

impl AsyncQuery<Vec<Migration>> for SqlxMigrationConnection<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = sqlx::query(AssertSqlSafe(query))
            .fetch_all(&mut *self.connection)
            .await?;
        rows.iter().map(applied_migration_from_row).collect()
    }
}

impl AsyncMigrate for SqlxMigrationConnection<'_> {
    /// refinery creates its history table if missing; ours lives in the set's own schema,
    /// which may not exist yet on a fresh database.
    fn assert_migrations_table_query(migration_table_name: &str) -> String {
        let create_schema = match migration_table_name.split_once('.') {
            Some((schema, _table)) => format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"),
            None => String::new(),
        };
        format!(
            "{create_schema}CREATE TABLE IF NOT EXISTS {migration_table_name} (
                version int4 PRIMARY KEY,
                name varchar(255),
                applied_on varchar(255),
                checksum varchar(255)
            );"
        )
    }
}

fn applied_migration_from_row(row: &sqlx::postgres::PgRow) -> Result<Migration, sqlx::Error> {
    let version: i32 = row.try_get("version")?;
    let name: String = row.try_get("name")?;
    let applied_on: String = row.try_get("applied_on")?;
    let checksum: String = row.try_get("checksum")?;
    let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    let checksum = checksum
        .parse::<u64>()
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    Ok(Migration::applied(version, name, applied_on, checksum))
}
