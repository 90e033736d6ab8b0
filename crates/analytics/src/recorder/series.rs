//! The series dictionary seen from the writer: `(name, labels)` to the series id, resolved in
//! the database once (`analytics.resolve_series`, which enforces the per-metric cap) and then
//! from memory.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::error::AnalyticsError;
use crate::model::{Labels, MetricPoint};

/// Series remembered at most; past this the memory starts over (and asks the database again).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    name: String,
    /// The labels as JSON with sorted keys: one text per label set.
    labels: String,
}

impl SeriesKey {
    fn of(name: &str, labels: &Labels) -> Self {
        Self {
            name: name.to_owned(),
            labels: serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned()),
        }
    }
}

/// Known series: `Some(id)`, or `None` when the metric's cap refused it.
#[derive(Default)]
pub(crate) struct SeriesCache {
    known: HashMap<SeriesKey, Option<i64>>,
}

impl SeriesCache {
    /// The series id of every point (`None`: refused by the cap), asking the database for the
    /// series not yet known, one statement each (each takes and releases its metric's lock
    /// at once, so writers in several processes never wait on each other for long).
    pub(crate) async fn resolve(
        &mut self,
        connection: &mut PgConnection,
        points: &[MetricPoint],
        max_series: u32,
    ) -> Result<Vec<Option<i64>>, AnalyticsError> {
        if self.known.len() > MAX_REMEMBERED {
            self.known.clear();
        }
        let mut ids = Vec::with_capacity(points.len());
        for point in points {
            let key = SeriesKey::of(&point.name, &point.labels);
            let id = match self.known.get(&key) {
                Some(id) => *id,
                None => {
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT analytics.resolve_series($1, $2::jsonb, $3)")
                            .bind(&key.name)
                            .bind(&key.labels)
                            .bind(i32::try_from(max_series).unwrap_or(i32::MAX))
                            .fetch_one(&mut *connection)
                            .await?;
                    self.known.insert(key, id);
                    id
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }
}
