//! [`Supervisor`]: named processes, started in dependency order and stopped in reverse.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::OrchestratorError;
use crate::logs::LogLine;
use crate::runner::{Command, Runner, Shared};
use crate::spec::{DependencyCondition, ProcessSpec};
use crate::state::{ProcessEvent, ProcessState, ProcessStatus};

/// Events kept for a subscriber that falls behind (it then misses the oldest).
const EVENT_BUFFER: usize = 1_024;

struct Handle {
    spec: Arc<ProcessSpec>,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// Keeps its processes alive and healthy; see the crate documentation. Cheap to share behind
/// an `Arc`; every method takes `&self`.
pub struct Supervisor {
    processes: BTreeMap<String, Handle>,
    /// Names in an order where every process comes after what it depends on.
    order: Vec<String>,
    events: broadcast::Sender<ProcessEvent>,
}

impl Supervisor {
    /// Validates the specs and their dependencies and starts one task per process (on the
    /// current tokio runtime). Nothing is spawned until `start` or `start_all`.
    pub fn new(specs: Vec<ProcessSpec>) -> Result<Self, OrchestratorError> {
        let mut by_name = BTreeMap::new();
        for spec in specs {
            spec.validate()?;
            if by_name.contains_key(&spec.name) {
                return Err(OrchestratorError::DuplicateProcess(spec.name));
            }
            by_name.insert(spec.name.clone(), spec);
        }
        let order = dependency_order(&by_name)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut processes = BTreeMap::new();
        for (name, spec) in by_name {
            let spec = Arc::new(spec);
            let shared = Arc::new(Shared::new(&spec));
            let (commands, receiver) = mpsc::channel(32);
            tokio::spawn(Runner::new(spec.clone(), shared.clone(), events.clone(), receiver).run());
            processes.insert(
                name,
                Handle {
                    spec,
                    commands,
                    shared,
                },
            );
        }
        Ok(Self {
            processes,
            order,
            events,
        })
    }

    fn handle(&self, name: &str) -> Result<&Handle, OrchestratorError> {
        self.processes
            .get(name)
            .ok_or_else(|| OrchestratorError::UnknownProcess(name.to_owned()))
    }

    async fn send<T>(
        &self,
        name: &str,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, OrchestratorError> {
        let (reply, answer) = oneshot::channel();
        self.handle(name)?
            .commands
            .send(command(reply))
            .await
            .map_err(|_| OrchestratorError::ShuttingDown)?;
        answer.await.map_err(|_| OrchestratorError::ShuttingDown)
    }

    /// Starts `name` (by hand: clears its backoff and restart budget), after starting what it
    /// depends on and waiting for each to be started or healthy as declared. Starting a
    /// running process does nothing.
    pub async fn start(&self, name: &str) -> Result<(), OrchestratorError> {
        let spec = self.handle(name)?.spec.clone();
        for dependency in &spec.depends_on {
            if !self
                .handle(&dependency.name)?
                .shared
                .state
                .borrow()
                .is_started()
            {
                Box::pin(self.start(&dependency.name)).await?;
            }
            self.wait_for(&spec.name, &dependency.name, dependency.condition)
                .await?;
        }
        self.send(name, Command::Start).await?
    }

    /// Stops `name`: its stop signal to its process group, SIGKILL after the grace period.
    /// It stays stopped until started again.
    pub async fn stop(&self, name: &str) -> Result<(), OrchestratorError> {
        self.send(name, Command::Stop).await
    }

    /// Stops `name` if it runs, then starts it (by hand).
    pub async fn restart(&self, name: &str) -> Result<(), OrchestratorError> {
        self.send(name, Command::Restart).await?
    }

    /// Starts every `autostart` process, dependencies first.
    pub async fn start_all(&self) -> Result<(), OrchestratorError> {
        for name in &self.order {
            if self.processes[name].spec.autostart {
                self.start(name).await?;
            }
        }
        Ok(())
    }

    /// Stops every process, dependents before what they depend on.
    pub async fn shutdown(&self) {
        for name in self.order.iter().rev() {
            let _ = self.stop(name).await;
        }
    }

    pub fn status(&self, name: &str) -> Result<ProcessStatus, OrchestratorError> {
        Ok(self.handle(name)?.shared.status(name))
    }

    /// Every process, in dependency order.
    pub fn list(&self) -> Vec<ProcessStatus> {
        self.order
            .iter()
            .map(|name| self.processes[name].shared.status(name))
            .collect()
    }

    pub fn spec(&self, name: &str) -> Result<Arc<ProcessSpec>, OrchestratorError> {
        Ok(self.handle(name)?.spec.clone())
    }

    /// The last `lines` lines of output (stdout and stderr), oldest first.
    pub fn logs(&self, name: &str, lines: usize) -> Result<Vec<LogLine>, OrchestratorError> {
        Ok(self.handle(name)?.shared.logs.tail(lines))
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ProcessEvent> {
        self.events.subscribe()
    }

    /// Waits until `dependency` is started or healthy; gives up when it can no longer get
    /// there by itself (stopped, exited, fatal) or after its start grace period and a few
    /// health checks more.
    async fn wait_for(
        &self,
        process: &str,
        dependency: &str,
        condition: DependencyCondition,
    ) -> Result<(), OrchestratorError> {
        let handle = self.handle(dependency)?;
        let health = &handle.spec.health;
        let patience = health.start_grace
            + health.interval * (health.failure_threshold + 1)
            + Duration::from_secs(5);
        let mut states = handle.shared.state.subscribe();
        let ready = |state: &ProcessState| match condition {
            DependencyCondition::Started => state.is_started(),
            DependencyCondition::Healthy => state.is_running(),
        };
        let hopeless = |state: &ProcessState| {
            matches!(
                state,
                ProcessState::Stopped | ProcessState::Exited { .. } | ProcessState::Fatal { .. }
            )
        };
        let waited = tokio::time::timeout(patience, async {
            loop {
                {
                    let state = states.borrow_and_update();
                    if ready(&state) {
                        return true;
                    }
                    if hopeless(&state) {
                        return false;
                    }
                }
                if states.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match waited {
            Ok(true) => Ok(()),
            _ => Err(OrchestratorError::DependencyNotReady {
                process: process.to_owned(),
                dependency: dependency.to_owned(),
                condition: match condition {
                    DependencyCondition::Started => "started",
                    DependencyCondition::Healthy => "healthy",
                },
                waited_ms: u64::try_from(patience.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// A topological order of the processes (dependencies first, ties by name), or the error
/// naming an unknown dependency or a cycle.
fn dependency_order(
    specs: &BTreeMap<String, ProcessSpec>,
) -> Result<Vec<String>, OrchestratorError> {
    for spec in specs.values() {
        for dependency in &spec.depends_on {
            if !specs.contains_key(&dependency.name) {
                return Err(OrchestratorError::UnknownDependency {
                    process: spec.name.clone(),
                    dependency: dependency.name.clone(),
                });
            }
        }
    }
    let mut order = Vec::with_capacity(specs.len());
    let mut done = HashSet::new();
    let mut visiting = HashMap::new();
    fn visit<'a>(
        name: &'a str,
        specs: &'a BTreeMap<String, ProcessSpec>,
        done: &mut HashSet<&'a str>,
        visiting: &mut HashMap<&'a str, ()>,
        order: &mut Vec<String>,
    ) -> Result<(), OrchestratorError> {
        if done.contains(name) {
            return Ok(());
        }
        if visiting.insert(name, ()).is_some() {
            return Err(OrchestratorError::DependencyCycle(name.to_owned()));
        }
        for dependency in &specs[name].depends_on {
            visit(&dependency.name, specs, done, visiting, order)?;
        }
        visiting.remove(name);
        done.insert(name);
        order.push(name.to_owned());
        Ok(())
    }
    for name in specs.keys() {
        visit(name, specs, &mut done, &mut visiting, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Dependency;

    fn spec(name: &str, depends_on: &[&str]) -> ProcessSpec {
        ProcessSpec {
            depends_on: depends_on
                .iter()
                .map(|name| Dependency {
                    name: (*name).to_owned(),
                    condition: DependencyCondition::Started,
                })
                .collect(),
            ..ProcessSpec::new(name, "true")
        }
    }

    fn order_of(specs: Vec<ProcessSpec>) -> Result<Vec<String>, OrchestratorError> {
        dependency_order(&specs.into_iter().map(|s| (s.name.clone(), s)).collect())
    }

    #[test]
    fn dependencies_come_first_and_cycles_are_refused() {
        assert_eq!(
            order_of(vec![
                spec("api", &["db", "cache"]),
                spec("cache", &["db"]),
                spec("db", &[]),
                spec("worker", &[]),
            ])
            .unwrap(),
            ["db", "cache", "api", "worker"]
        );
        assert!(matches!(
            order_of(vec![spec("a", &["b"]), spec("b", &["a"])]),
            Err(OrchestratorError::DependencyCycle(_))
        ));
        assert!(matches!(
            order_of(vec![spec("a", &["ghost"])]),
            Err(OrchestratorError::UnknownDependency { .. })
        ));
    }
}
