//! What every area's scenarios share: running ours and the reference alternately, settling
//! the cluster between scenarios, and printing each measurement as soon as it is known.

use std::future::Future;

use db_core::sqlx::{self, Connection, PgConnection};
use db_core::{Db, LocalCluster};

use crate::load::LoadResult;
use crate::report::{Latency, Measurement, progress};

/// Whether `scenario` is among those `--only` asked for (all when none was given).
pub fn wanted(only: &[String], scenario: &str) -> bool {
    only.is_empty()
        || only
            .iter()
            .any(|name| scenario.starts_with(name.as_str()) || name.starts_with(scenario))
}

/// Our side of a comparison: a rate, its latencies, and a scenario-specific count.
pub struct Run {
    pub rate: f64,
    pub latency: Latency,
    pub failures: u64,
    /// A count of the scenario's own (blocks sealed, ...).
    pub extra: u64,
}

impl From<LoadResult> for Run {
    fn from(result: LoadResult) -> Self {
        Self {
            rate: result.units_per_second(),
            latency: result.latency,
            failures: result.failures,
            extra: 0,
        }
    }
}

/// Vacuums and checkpoints the application's database and pgbench's, so that no scenario
/// pays for the background work (autovacuum, page writes) the ones before it left behind.
pub async fn settle(db: &Db, cluster: &LocalCluster) -> anyhow::Result<()> {
    progress("settling: VACUUM (ANALYZE), CHECKPOINT");
    sqlx::raw_sql("VACUUM (ANALYZE)")
        .execute(db.primary())
        .await?;
    let mut pgbench = PgConnection::connect_with(&cluster.connect_options("pgbench")).await?;
    sqlx::raw_sql("VACUUM (ANALYZE)")
        .execute(&mut pgbench)
        .await?;
    sqlx::raw_sql("CHECKPOINT").execute(&mut pgbench).await?;
    Ok(())
}

/// Runs reference and ours alternately, `rounds` times each; returns the median reference rate
/// and the median run of ours.
pub async fn alternate<R, RF, O, OF>(
    rounds: usize,
    mut reference: R,
    mut ours: O,
) -> anyhow::Result<(f64, Run)>
where
    R: FnMut() -> RF,
    RF: Future<Output = anyhow::Result<f64>>,
    O: FnMut() -> OF,
    OF: Future<Output = Run>,
{
    let mut references = Vec::new();
    let mut runs = Vec::new();
    for round in 1..=rounds.max(1) {
        let reference_rate = reference().await?;
        let run = ours().await;
        progress(&format!(
            "  round {round}: reference {reference_rate:.0}/s, ours {:.0}/s",
            run.rate
        ));
        references.push(reference_rate);
        runs.push(run);
    }
    references.sort_by(f64::total_cmp);
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let median_reference = references[references.len() / 2];
    let median_run = runs.swap_remove(runs.len() / 2);
    Ok((median_reference, median_run))
}

/// Prints a measurement as soon as it is known (a later scenario may fail) and keeps it.
pub fn record(measurements: &mut Vec<Measurement>, measurement: Measurement) {
    measurement.print();
    measurements.push(measurement);
}

/// The middle value (the upper of the two middle ones for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
