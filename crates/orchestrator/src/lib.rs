//! Supervised processes for FODI: the Go backend, or any service, kept alive, healthy and
//! controllable. The `supervisor` binary runs it standalone; the api-server embeds it.
//!
//! A [`Supervisor`] owns named [`ProcessSpec`]s. Each process has one task that alone changes
//! its [`ProcessState`]; its exit is observed by awaiting the child (no polling), its health
//! by an HTTP or TCP probe, and a process counts as running only once its probe passes. A
//! process whose probe fails `failure_threshold` times in a row is hung and is restarted, like
//! one that exited: at once the first time, then with exponential backoff (capped, jittered,
//! reset after a stable period), until its restart budget for the window is spent and it
//! becomes `Fatal` until started by hand. Every process runs in a process group of its own, and
//! stopping it signals the whole group, then SIGKILLs it after the grace period: its own
//! children never outlive it. Every state change is broadcast ([`Supervisor::subscribe`]),
//! logged with tracing and counted through the `metrics` facade; output is kept line by line
//! in a bounded ring per process and optionally in a rotated file. [`jobs`] supervises
//! in-process background jobs the same way: on an interval, with each one's last run known.
//!
//! Architecture invariant: this crate needs no database and no HTTP framework (its HTTP
//! probe is a minimal client of its own). Start reading at [`supervisor`] and [`runner`].

mod child;
mod error;
pub mod health;
pub mod jobs;
mod logs;
pub mod runner;
pub mod spec;
mod state;
pub mod supervisor;

pub use child::BASE_ENV;
pub use error::OrchestratorError;
pub use logs::{LogLine, Stream};
pub use spec::{
    Backoff, Dependency, DependencyCondition, HealthCheck, HealthProbe, LogSpec, ProcessSpec,
    RestartBudget, RestartPolicy, StopSignal, StopSpec,
};
pub use state::{ProcessEvent, ProcessState, ProcessStatus};
pub use supervisor::Supervisor;

/// Waits for SIGTERM or SIGINT (Ctrl-C), the signals that ask a supervising process (the
/// `supervisor`, the api-server) to stop gracefully; tells which came.
pub async fn stop_requested() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// Describes this crate's metrics to the installed `metrics` recorder (their help texts in
/// Prometheus). Call once, after installing the recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    jobs::describe_metrics();
    describe_gauge!(
        "orchestrator_up",
        "1 while the process runs (healthy or failing checks below the threshold)"
    );
    describe_gauge!(
        "orchestrator_process_state",
        "1 for the process's current state, 0 for the others"
    );
    describe_counter!(
        "orchestrator_restarts_total",
        "Automatic restarts of the process"
    );
    describe_gauge!(
        "orchestrator_uptime_seconds",
        metrics::Unit::Seconds,
        "Seconds since the process became running"
    );
    describe_histogram!(
        "orchestrator_health_check_seconds",
        metrics::Unit::Seconds,
        "Duration of the process's health checks"
    );
}
