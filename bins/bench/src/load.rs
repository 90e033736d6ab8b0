//! A closed-loop load: N clients, each running one operation after another for a while.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::report::Latency;

/// What a run of the load did.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Operations that succeeded, times the units of work each reported.
    pub units: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub latency: Latency,
}

impl LoadResult {
    pub fn units_per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `clients` concurrent loops of `operation` for `duration`. Each call returns how many
/// units of work it did (transfers, rows) or an error, which is counted, not fatal.
pub async fn run<F, Fut, E>(clients: usize, duration: Duration, operation: F) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut units, mut failures) = (0u64, 0u64);
            let mut first_error = None;
            while Instant::now() < deadline {
                let began = Instant::now();
                match operation(client).await {
                    Ok(done) => {
                        units += done;
                        latencies
                            .push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(error) => {
                        failures += 1;
                        first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            (units, failures, latencies, first_error)
        }));
    }
    let mut result_latencies = Vec::new();
    let (mut units, mut failures) = (0, 0);
    for task in tasks {
        if let Ok((task_units, task_failures, latencies, first_error)) = task.await {
            units += task_units;
            failures += task_failures;
            result_latencies.extend(latencies);
            if let Some(error) = first_error {
                crate::report::progress(&format!("a client saw failures, first: {error}"));
            }
        }
    }
    LoadResult {
        units,
        failures,
        elapsed: started.elapsed(),
        latency: Latency::of(result_latencies),
    }
}
