//! The series dictionary seen from the writer: `(name, labels)` to the series id, resolved in
//! the database once (`analytics.resolve_series`, which enforces the per-metric cap) and then
//! from memory.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::error::AnalyticsError;
use crate::model::{Labels, MetricPoint};

/// Series remembered at most; past this the memory starts over (and asks the database again).
const MAX_REMEMBERED: usize = 100_000;

/// Known series by name, then labels: `Some(id)`, or `None` when the metric's cap refused
/// it. Two levels so that a point is looked up by reference, without building a key: this
/// runs for every point written.
#[derive(Default)]
pub(crate) struct SeriesCache {
    known: HashMap<String, HashMap<Labels, Option<i64>>>,
    remembered: usize,
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
        if self.remembered > MAX_REMEMBERED {
            self.known.clear();
            self.remembered = 0;
        }
        let mut ids = Vec::with_capacity(points.len());
        for point in points {
            let known = self
                .known
                .get(&point.name)
                .and_then(|series| series.get(&point.labels));
            let id = match known {
                Some(id) => *id,
                None => {
                    // Labels are sorted (a BTreeMap): one JSON text per label set.
                    let labels = serde_json::to_string(&point.labels)
                        .map_err(|error| AnalyticsError::Flush(error.to_string()))?;
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT analytics.resolve_series($1, $2::jsonb, $3)")
                            .bind(&point.name)
                            .bind(labels)
                            .bind(i32::try_from(max_series).unwrap_or(i32::MAX))
                            .fetch_one(&mut *connection)
                            .await?;
                    self.known
                        .entry(point.name.clone())
                        .or_default()
                        .insert(point.labels.clone(), id);
                    self.remembered += 1;
                    id
                }
            };
            ids.push(id);
        }
        Ok(ids)
    }
}
