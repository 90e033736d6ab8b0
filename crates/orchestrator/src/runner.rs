//! One task per process: the only place its state changes. Commands (start, stop, restart)
//! arrive on a channel and are handled one at a time, so concurrent requests serialise; the
//! child's exit and each health probe's result arrive as messages from small tasks of their
//! own, so nothing is polled and nothing waits on a probe.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::sleep_until;

use crate::child;
use crate::error::OrchestratorError;
use crate::health::{self, ProbeResult};
use crate::logs::ProcessLogs;
use crate::spec::{HealthProbe, ProcessSpec, RestartPolicy};
use crate::state::{ProcessEvent, ProcessState, ProcessStatus};

/// While a process is starting (within its grace period) it is probed this often, so that it
/// counts as running as soon as it answers.
const STARTING_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// How long a process may take to die after SIGKILL before it is given up on.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub(crate) enum Command {
    Start(oneshot::Sender<Result<(), OrchestratorError>>),
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<Result<(), OrchestratorError>>),
}

/// What the supervisor reads of a process without asking its task.
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<ProcessState>,
    pub(crate) restarts: AtomicU64,
    pub(crate) running_since: Mutex<Option<Instant>>,
    pub(crate) last_check: Mutex<Option<Duration>>,
    pub(crate) logs: Arc<ProcessLogs>,
}

impl Shared {
    pub(crate) fn new(spec: &ProcessSpec) -> Self {
        Self {
            state: watch::Sender::new(ProcessState::Stopped),
            restarts: AtomicU64::new(0),
            running_since: Mutex::new(None),
            last_check: Mutex::new(None),
            logs: Arc::new(ProcessLogs::new(&spec.name, &spec.logs)),
        }
    }

    pub(crate) fn status(&self, name: &str) -> ProcessStatus {
        let running_since = *self
            .running_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last_check = *self
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ProcessStatus {
            name: name.to_owned(),
            state: self.state.borrow().clone(),
            restarts: self.restarts.load(Ordering::Relaxed),
            uptime_seconds: running_since.map(|since| since.elapsed().as_secs_f64()),
            last_health_check_ms: last_check.map(|took| took.as_secs_f64() * 1_000.0),
        }
    }
}

/// The child of the current run.
struct Alive {
    pid: u32,
    /// Distinguishes this run's exit and probes from a previous run's.
    generation: u64,
    started_at: Instant,
    healthy_since: Option<Instant>,
    failures: u32,
    probing: bool,
    next_probe: Instant,
}

pub(crate) struct Runner {
    spec: Arc<ProcessSpec>,
    shared: Arc<Shared>,
    events: broadcast::Sender<ProcessEvent>,
    commands: mpsc::Receiver<Command>,
    exits: mpsc::UnboundedReceiver<(u64, std::process::ExitStatus)>,
    exit_sender: mpsc::UnboundedSender<(u64, std::process::ExitStatus)>,
    probes: mpsc::UnboundedReceiver<(u64, ProbeResult, Duration)>,
    probe_sender: mpsc::UnboundedSender<(u64, ProbeResult, Duration)>,
    alive: Option<Alive>,
    generation: u64,
    /// Consecutive automatic restarts (the backoff's attempt number).
    attempt: u32,
    restart_at: Option<Instant>,
    /// When recent automatic restarts happened, for the budget.
    recent_restarts: VecDeque<Instant>,
}

impl Runner {
    pub(crate) fn new(
        spec: Arc<ProcessSpec>,
        shared: Arc<Shared>,
        events: broadcast::Sender<ProcessEvent>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (exit_sender, exits) = mpsc::unbounded_channel();
        let (probe_sender, probes) = mpsc::unbounded_channel();
        // Exported from the start at zero, so that a rate over it exists before a restart.
        metrics::counter!("orchestrator_restarts_total", "process" => spec.name.clone())
            .increment(0);
        metrics::gauge!("orchestrator_up", "process" => spec.name.clone()).set(0.0);
        Self {
            spec,
            shared,
            events,
            commands,
            exits,
            exit_sender,
            probes,
            probe_sender,
            alive: None,
            generation: 0,
            attempt: 0,
            restart_at: None,
            recent_restarts: VecDeque::new(),
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    fn state(&self) -> ProcessState {
        self.shared.state.borrow().clone()
    }

    fn set_state(&self, to: ProcessState, reason: &str) {
        let from = self.state();
        if from == to {
            return;
        }
        tracing::info!(process = %self.name(), from = from.name(), to = to.name(), reason, "process state");
        let process = self.name().to_owned();
        metrics::gauge!("orchestrator_process_state", "process" => process.clone(), "state" => from.name())
            .set(0.0);
        metrics::gauge!("orchestrator_process_state", "process" => process.clone(), "state" => to.name())
            .set(1.0);
        metrics::gauge!("orchestrator_up", "process" => process.clone()).set(if to.is_up() {
            1.0
        } else {
            0.0
        });
        {
            let mut running_since = self
                .shared
                .running_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match (&to, running_since.is_some()) {
                (ProcessState::Running { .. } | ProcessState::Unhealthy { .. }, false) => {
                    *running_since = Some(Instant::now());
                }
                (ProcessState::Running { .. } | ProcessState::Unhealthy { .. }, true) => {}
                _ => *running_since = None,
            }
        }
        self.shared.state.send_replace(to.clone());
        let _ = self.events.send(ProcessEvent {
            process,
            from,
            to,
            reason: reason.to_owned(),
            at: SystemTime::now(),
        });
    }

    pub(crate) async fn run(mut self) {
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            let restart_at = self.restart_at;
            let next_probe = self
                .alive
                .as_ref()
                .filter(|alive| !alive.probing && self.spec.health.probe != HealthProbe::None)
                .map(|alive| alive.next_probe);
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    // The supervisor is gone: leave nothing behind.
                    None => {
                        self.stop_child("the supervisor stopped").await;
                        self.set_state(ProcessState::Stopped, "the supervisor stopped");
                        return;
                    }
                },
                Some((generation, status)) = self.exits.recv() => {
                    self.on_exit(generation, status).await;
                }
                Some((generation, result, took)) = self.probes.recv() => {
                    self.on_probe(generation, result, took).await;
                }
                () = sleep_until(restart_at.unwrap_or(far).into()), if restart_at.is_some() => {
                    self.restart_at = None;
                    self.restart_now().await;
                }
                () = sleep_until(next_probe.unwrap_or(far).into()), if next_probe.is_some() => {
                    self.launch_probe();
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Start(reply) => {
                let result = if self.alive.is_some() {
                    Ok(())
                } else {
                    self.forgive();
                    self.spawn("started by hand")
                };
                let _ = reply.send(result);
            }
            Command::Stop(reply) => {
                self.restart_at = None;
                self.stop_child("stopped by hand").await;
                self.set_state(ProcessState::Stopped, "stopped by hand");
                let _ = reply.send(());
            }
            Command::Restart(reply) => {
                self.restart_at = None;
                self.stop_child("restarted by hand").await;
                self.forgive();
                let _ = reply.send(self.spawn("restarted by hand"));
            }
        }
    }

    /// A start by hand clears the backoff and the restart budget (and a `Fatal` state).
    fn forgive(&mut self) {
        self.attempt = 0;
        self.restart_at = None;
        self.recent_restarts.clear();
    }

    fn spawn(&mut self, reason: &str) -> Result<(), OrchestratorError> {
        let child = match child::spawn(&self.spec, &self.shared.logs) {
            Ok(child) => child,
            Err(reason) => {
                self.set_state(
                    ProcessState::Exited {
                        code: None,
                        signal: None,
                    },
                    &reason,
                );
                return Err(OrchestratorError::StartFailed {
                    process: self.name().to_owned(),
                    reason,
                });
            }
        };
        let pid = child.id().unwrap_or(0);
        self.generation += 1;
        let generation = self.generation;
        let exits = self.exit_sender.clone();
        tokio::spawn(async move {
            let mut child = child;
            if let Ok(status) = child.wait().await {
                let _ = exits.send((generation, status));
            }
        });
        let now = Instant::now();
        let no_probe = self.spec.health.probe == HealthProbe::None;
        self.alive = Some(Alive {
            pid,
            generation,
            started_at: now,
            healthy_since: no_probe.then_some(now),
            failures: 0,
            probing: false,
            next_probe: now,
        });
        if no_probe {
            self.set_state(ProcessState::Running { pid }, reason);
        } else {
            self.set_state(ProcessState::Starting { pid }, reason);
        }
        Ok(())
    }

    fn launch_probe(&mut self) {
        let Some(alive) = self.alive.as_mut() else {
            return;
        };
        alive.probing = true;
        // Checks start `interval` apart, however long each takes: a hang is detected
        // `threshold` intervals after the first failing check began (plus its timeout).
        alive.next_probe = Instant::now() + self.spec.health.interval;
        let (probe, timeout) = (self.spec.health.probe.clone(), self.spec.health.timeout);
        let (generation, results) = (alive.generation, self.probe_sender.clone());
        tokio::spawn(async move {
            let (result, took) = health::check(&probe, timeout).await;
            let _ = results.send((generation, result, took));
        });
    }

    async fn on_probe(&mut self, generation: u64, result: ProbeResult, took: Duration) {
        let health = self.spec.health.clone();
        let state = self.state();
        let starting = matches!(state, ProcessState::Starting { .. });
        let Some(alive) = self
            .alive
            .as_mut()
            .filter(|alive| alive.generation == generation)
        else {
            return;
        };
        alive.probing = false;
        let in_grace = alive.started_at.elapsed() < health.start_grace;
        let pid = alive.pid;
        let outcome = match result {
            ProbeResult::Healthy => {
                alive.failures = 0;
                alive.healthy_since.get_or_insert_with(Instant::now);
                Probed::Healthy
            }
            // Starting up: failures do not count yet, and it is asked again soon.
            ProbeResult::Unhealthy(_) if starting && in_grace => {
                alive.next_probe = Instant::now() + STARTING_PROBE_INTERVAL;
                Probed::StillStarting
            }
            ProbeResult::Unhealthy(why) => {
                alive.failures += 1;
                if alive.failures >= health.failure_threshold {
                    Probed::Hung(format!(
                        "health check failed {} times in a row ({why}): hung",
                        alive.failures
                    ))
                } else {
                    Probed::Failing(alive.failures, why)
                }
            }
        };
        *self
            .shared
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(took);
        let process = self.spec.name.clone();
        metrics::histogram!("orchestrator_health_check_seconds", "process" => process.clone())
            .record(took.as_secs_f64());
        match outcome {
            Probed::Healthy if !state.is_running() => {
                self.set_state(ProcessState::Running { pid }, "health check passed");
            }
            Probed::Healthy | Probed::StillStarting => {}
            Probed::Failing(failures, why) => {
                if !starting {
                    self.set_state(
                        ProcessState::Unhealthy { pid, failures },
                        &format!("health check failed: {why}"),
                    );
                }
            }
            Probed::Hung(reason) => {
                tracing::warn!(process = %process, %reason, "restarting a hung process");
                let healthy_since = self.alive.as_ref().and_then(|alive| alive.healthy_since);
                self.stop_child(&reason).await;
                self.forget_backoff_if_stable(healthy_since);
                self.after_failure(&reason);
            }
        }
        let uptime = self
            .shared
            .running_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        metrics::gauge!("orchestrator_uptime_seconds", "process" => process).set(uptime);
    }

    async fn on_exit(&mut self, generation: u64, status: std::process::ExitStatus) {
        let Some(alive) = self.alive.take_if(|alive| alive.generation == generation) else {
            return;
        };
        // Its own children may have outlived it: they go with it.
        child::kill_group(alive.pid);
        let reason = describe(status);
        self.forget_backoff_if_stable(alive.healthy_since);
        let restart = match self.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Never => false,
        };
        if restart {
            self.after_failure(&reason);
        } else {
            use std::os::unix::process::ExitStatusExt;
            self.set_state(
                ProcessState::Exited {
                    code: status.code(),
                    signal: status.signal(),
                },
                &reason,
            );
        }
    }

    /// A run that was healthy for `reset_after` makes the next restart a first one again.
    fn forget_backoff_if_stable(&mut self, healthy_since: Option<Instant>) {
        if healthy_since.is_some_and(|since| since.elapsed() >= self.spec.backoff.reset_after) {
            self.attempt = 0;
        }
    }

    /// Schedules an automatic restart, unless the budget is spent (then `Fatal`).
    fn after_failure(&mut self, reason: &str) {
        let now = Instant::now();
        let budget = &self.spec.budget;
        while self
            .recent_restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > budget.window)
        {
            self.recent_restarts.pop_front();
        }
        if self.recent_restarts.len() >= budget.max_restarts as usize {
            let fatal = format!(
                "{reason}; restarted {} times within {:?}: giving up until started by hand",
                self.recent_restarts.len(),
                budget.window
            );
            tracing::error!(process = %self.spec.name, reason = %fatal, "process is fatal");
            self.set_state(
                ProcessState::Fatal {
                    reason: fatal.clone(),
                },
                &fatal,
            );
            return;
        }
        self.attempt += 1;
        let delay = restart_delay(&self.spec, self.attempt);
        self.recent_restarts.push_back(now);
        self.restart_at = Some(now + delay);
        self.set_state(
            ProcessState::Backoff {
                attempt: self.attempt,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            reason,
        );
    }

    async fn restart_now(&mut self) {
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("orchestrator_restarts_total", "process" => self.spec.name.clone())
            .increment(1);
        let attempt = self.attempt;
        if let Err(error) = self.spawn(&format!("restart {attempt}")) {
            self.after_failure(&error.to_string());
        }
    }

    /// Stops the current child, if any: the stop signal to its group (then SIGCONT, so a
    /// stopped process can act on it), SIGKILL of the group after the grace period, and
    /// SIGKILL of the group once it is gone, for any child of its own left behind.
    async fn stop_child(&mut self, reason: &str) {
        let Some(alive) = self.alive.take() else {
            return;
        };
        self.set_state(ProcessState::Stopping { pid: alive.pid }, reason);
        child::signal_group(alive.pid, self.spec.stop.signal);
        child::continue_group(alive.pid);
        if !self.wait_exit(alive.generation, self.spec.stop.grace).await {
            tracing::warn!(process = %self.spec.name, grace = ?self.spec.stop.grace, "did not stop in time; killing its process group");
            child::kill_group(alive.pid);
            self.wait_exit(alive.generation, KILL_WAIT).await;
        }
        child::kill_group(alive.pid);
    }

    /// Waits up to `limit` for the exit of run `generation`; tells whether it came.
    async fn wait_exit(&mut self, generation: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.exits.recv()).await {
                Ok(Some((exited, _))) if exited == generation => return true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }
}

/// What a probe's result means for the process.
enum Probed {
    Healthy,
    StillStarting,
    Failing(u32, String),
    Hung(String),
}

/// The first restart after a stable run is immediate; the following ones back off.
fn restart_delay(spec: &ProcessSpec, attempt: u32) -> Duration {
    if attempt <= 1 {
        Duration::ZERO
    } else {
        spec.backoff.delay(attempt - 1, fastrand::f64())
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited with status 0".to_owned(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}
