//! Helpers shared by the test modules.

use db_core::migrate::{Migration, MigrationSet};
use db_core::sqlx::{self, PgConnection};

/// A migration set built in memory from `(file name, SQL)` pairs.
pub fn set(name: &str, files: &[(&str, &str)]) -> MigrationSet {
    let migrations = files
        .iter()
        .map(|(file, sql)| Migration::unapplied(file, sql).unwrap())
        .collect();
    MigrationSet::new(name, name, migrations)
}

/// Everything an outside observer can see of a database's schemas: relations with their
/// kind, and the rows of every history table. Two equal snapshots mean nothing changed.
pub async fn snapshot(connection: &mut PgConnection) -> String {
    let relations: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname || ':' || c.relkind::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
         ORDER BY 1",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    let mut text = relations.join("\n");
    let histories: Vec<String> = relations
        .iter()
        .filter(|relation| relation.ends_with(".refinery_schema_history:r"))
        .map(|relation| relation.trim_end_matches(":r").to_owned())
        .collect();
    for history in histories {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT version || ' ' || name || ' ' || checksum FROM {history} ORDER BY version"
        )))
        .fetch_all(&mut *connection)
        .await
        .unwrap();
        text.push_str(&format!("\n{history}: {}", rows.join(", ")));
    }
    text
}

/// Versions recorded in a history table.
pub async fn history(connection: &mut PgConnection, schema: &str) -> Vec<i32> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {schema}.refinery_schema_history ORDER BY version"
    )))
    .fetch_all(connection)
    .await
    .unwrap()
}

pub async fn relation_exists(connection: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(connection)
        .await
        .unwrap()
}
