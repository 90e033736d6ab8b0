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
    clients: usize,
    /// Each successful call's duration, in microseconds.
    latencies: Vec<u32>,
}

impl LoadResult {
    pub fn units_per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }

    /// The latencies as wrk reports its own, for comparing the two: wrk corrects for
    /// coordinated omission (`stats_correct` in its source). With `interval` the run's time
    /// divided by the calls each client made, a call that took `n` ≥ 2 × `interval` also
    /// stands for the calls a client at a steady rate would have started while it waited,
    /// counted at `n - interval`, `n - 2 × interval`, ... while above one interval. A stall
    /// of 100 ms in a run of 2 ms calls thus weighs fifty times more than its own calls.
    pub fn latency_as_wrk_counts(&self) -> Latency {
        let calls = self.latencies.len() as u64;
        let per_client = calls / self.clients.max(1) as u64;
        if per_client == 0 {
            return self.latency;
        }
        let interval = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX) / per_client;
        let mut counted = self.latencies.clone();
        if interval > 0 {
            for &latency in &self.latencies {
                let latency = u64::from(latency);
                if latency < 2 * interval {
                    continue;
                }
                let mut missed = latency - interval;
                while missed > interval {
                    counted.push(u32::try_from(missed).unwrap_or(u32::MAX));
                    missed -= interval;
                }
            }
        }
        Latency::of(counted)
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
        latency: Latency::of(result_latencies.clone()),
        clients,
        latencies: result_latencies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 99 calls of 1 ms and one of 100 ms, by one client in 199 ms.
    fn one_stall() -> LoadResult {
        let mut latencies = vec![1_000; 99];
        latencies.push(100_000);
        LoadResult {
            units: 100,
            failures: 0,
            elapsed: Duration::from_millis(199),
            latency: Latency::of(latencies.clone()),
            clients: 1,
            latencies,
        }
    }

    #[test]
    fn a_stall_weighs_as_the_calls_a_steady_client_would_have_made_meanwhile() {
        let result = one_stall();
        assert!((result.latency.p99_ms - 1.0).abs() < f64::EPSILON);
        // The interval is 1.99 ms: the stall also counts at 98.01, 96.02, ... 3.99 ms (49
        // more calls), so a p99 of 149 calls lands among them.
        let counted = result.latency_as_wrk_counts();
        assert!(counted.p99_ms > 90.0, "{counted:?}");
        assert!((counted.max_ms - 100.0).abs() < f64::EPSILON);
    }

    #[test]
    fn steady_calls_are_counted_once() {
        let latencies = vec![1_000; 100];
        let result = LoadResult {
            units: 100,
            failures: 0,
            elapsed: Duration::from_millis(100),
            latency: Latency::of(latencies.clone()),
            clients: 1,
            latencies,
        };
        let counted = result.latency_as_wrk_counts();
        assert!((counted.p99_ms - 1.0).abs() < f64::EPSILON, "{counted:?}");
    }
}
