//! Supervised background jobs: in-process tasks that each run on an interval (a sealer, a
//! rollup refresh, partition maintenance), with each job's last run kept for a readiness
//! answer and reported through the `metrics` facade (`fodi_job_*`). Runs of one job never
//! overlap, a failed run is counted and retried at the next tick, and a job whose task ended
//! (a panic) is reported dead rather than silently gone.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::task::JoinHandle;

/// One run: `Ok` with a short summary, or the error.
pub type JobRun = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// What is known of a job.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStatus {
    pub interval_ms: u64,
    pub runs: u64,
    pub failures: u64,
    /// Unix milliseconds.
    pub last_run_at_ms: Option<u64>,
    pub last_duration_ms: Option<u64>,
    pub last_ok: Option<bool>,
    /// The last run's summary or error.
    pub last_result: Option<String>,
    /// Whether its task is still running (a job that panicked is not).
    pub alive: bool,
}

/// A job running `run` on a clone of `service` (a cheap handle, such as a store), its result's
/// `Debug` as the run's summary and its error with its causes ([`error_chain`]) as the failure.
pub fn on<S, F, Fut, T, E>(service: S, run: F) -> impl Fn() -> JobRun + Send + 'static
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: std::fmt::Debug,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move || {
        let run = run(service.clone());
        Box::pin(async move {
            run.await
                .map(|summary| format!("{summary:?}"))
                .map_err(|error| error_chain(error.into().as_ref()))
        })
    }
}

/// An error and its causes, outermost first (`cannot refresh: connection refused`), each
/// cause left out where the message before it already says it: its words after any prefix of
/// its own (`error returned from database: permission denied ...` once a message quoted
/// `permission denied ...`).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        let words = said.rsplit(": ").next().unwrap_or(&said);
        if !text.contains(words) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Help texts of the `fodi_job_*` metrics (part of [`crate::describe_metrics`]).
pub(crate) fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "fodi_job_runs_total",
        "Background job runs, by job and outcome"
    );
    describe_histogram!(
        "fodi_job_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of background job runs, by job"
    );
    describe_gauge!(
        "fodi_job_last_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the job's last successful run"
    );
    describe_gauge!(
        "fodi_job_last_run_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time of the job's last run, successful or not"
    );
    describe_gauge!(
        "fodi_job_last_run_ok",
        "1 when the job's last run succeeded, 0 when it failed"
    );
    describe_gauge!("fodi_job_alive", "1 while the job's task runs");
    describe_gauge!(
        "fodi_job_interval_seconds",
        metrics::Unit::Seconds,
        "How often the job runs (its [jobs] setting)"
    );
}

/// The jobs of one process.
#[derive(Default)]
pub struct Jobs {
    statuses: Arc<Mutex<BTreeMap<&'static str, JobStatus>>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Jobs {
    /// Runs `job` every `interval` (the first run after one interval), each run bounded by the
    /// interval's end only by itself: runs never overlap.
    pub fn spawn<F>(&mut self, name: &'static str, interval: Duration, job: F)
    where
        F: Fn() -> JobRun + Send + 'static,
    {
        metrics::gauge!("fodi_job_interval_seconds", "job_name" => name)
            .set(interval.as_secs_f64());
        let statuses = self.statuses.clone();
        statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name,
                JobStatus {
                    interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                    alive: true,
                    ..JobStatus::default()
                },
            );
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let started = Instant::now();
                let result = job().await;
                let took = started.elapsed();
                let outcome = if result.is_ok() { "ok" } else { "error" };
                metrics::counter!("fodi_job_runs_total", "job_name" => name, "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("fodi_job_duration_seconds", "job_name" => name)
                    .record(took.as_secs_f64());
                let now_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_millis() as u64)
                    .unwrap_or(0);
                let now_s = now_ms as f64 / 1_000.0;
                metrics::gauge!("fodi_job_last_run_timestamp_seconds", "job_name" => name)
                    .set(now_s);
                let ok = match &result {
                    Ok(_) => {
                        metrics::gauge!("fodi_job_last_success_timestamp_seconds", "job_name" => name)
                            .set(now_s);
                        1.0
                    }
                    Err(error) => {
                        tracing::warn!(job = name, %error, "background job failed");
                        0.0
                    }
                };
                metrics::gauge!("fodi_job_last_run_ok", "job_name" => name).set(ok);
                let mut statuses = statuses.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(status) = statuses.get_mut(name) {
                    status.runs += 1;
                    status.failures += u64::from(result.is_err());
                    status.last_run_at_ms = Some(now_ms);
                    status.last_duration_ms =
                        Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
                    status.last_ok = Some(result.is_ok());
                    status.last_result = Some(match result {
                        Ok(summary) => summary,
                        Err(error) => error,
                    });
                }
            }
        });
        self.tasks.push((name, task));
    }

    /// Every job's status, by name.
    pub fn statuses(&self) -> BTreeMap<&'static str, JobStatus> {
        let mut statuses = self
            .statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (name, task) in &self.tasks {
            if let Some(status) = statuses.get_mut(name) {
                status.alive = !task.is_finished();
            }
        }
        statuses
    }

    /// Stops every job (a run in progress is abandoned: each is safe to interrupt).
    pub fn stop(&self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot refresh the rollup")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot refresh the rollup: {0}")]
    struct Quoting(#[source] std::io::Error);

    /// A message quoting its cause's words without the cause's own prefix.
    #[derive(Debug, thiserror::Error)]
    #[error("permission denied (permission denied for table daily_stats, SQLSTATE 42501)")]
    struct Denied(#[source] Prefixed);

    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: permission denied for table daily_stats")]
    struct Prefixed;

    /// A job's failure names its cause, which the outer message alone would hide.
    #[tokio::test]
    async fn a_failed_run_reports_the_cause_chain() {
        let run = on((), |()| async {
            Err::<(), _>(Outer(std::io::Error::other("connection refused")))
        });
        assert_eq!(
            run().await.unwrap_err(),
            "cannot refresh the rollup: connection refused"
        );
        // A message that already quotes its cause does not repeat it.
        let quoted = on((), |()| async {
            Err::<(), _>(Quoting(std::io::Error::other("connection refused")))
        });
        assert_eq!(
            quoted().await.unwrap_err(),
            "cannot refresh the rollup: connection refused"
        );
        let denied = on((), |()| async { Err::<(), _>(Denied(Prefixed)) });
        assert_eq!(
            denied().await.unwrap_err(),
            "permission denied (permission denied for table daily_stats, SQLSTATE 42501)"
        );
    }

    /// What `/ready` reads: a job whose task ended (a panic) is not alive; one whose runs fail
    /// still is, with the failure as its last result.
    #[tokio::test]
    async fn a_job_that_panics_is_reported_dead_and_one_that_fails_alive() {
        let mut jobs = Jobs::default();
        jobs.spawn("panics", Duration::from_millis(10), || {
            Box::pin(async { panic!("a bug in the job") })
        });
        jobs.spawn("fails", Duration::from_millis(10), || {
            Box::pin(async { Err("the database said no".to_owned()) })
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let statuses = loop {
            let statuses = jobs.statuses();
            if !statuses["panics"].alive && statuses["fails"].runs > 0 {
                break statuses;
            }
            assert!(Instant::now() < deadline, "{statuses:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let failing = &statuses["fails"];
        assert!(failing.alive);
        assert_eq!(failing.last_ok, Some(false));
        assert_eq!(failing.last_result.as_deref(), Some("the database said no"));
        jobs.stop();
    }
}
