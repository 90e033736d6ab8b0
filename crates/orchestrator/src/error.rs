//! Every failure of the orchestrator.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    #[error("process {process}: {reason}")]
    InvalidSpec { process: String, reason: String },
    #[error("no process named {0:?}")]
    UnknownProcess(String),
    #[error("process {process} depends on {dependency}, which is not configured")]
    UnknownDependency { process: String, dependency: String },
    #[error("the dependencies form a cycle through {0}")]
    DependencyCycle(String),
    #[error("process {0} is configured twice")]
    DuplicateProcess(String),
    #[error("{process} could not start: {reason}")]
    StartFailed { process: String, reason: String },
    #[error("{process} waited {waited_ms} ms for {dependency} to be {condition}")]
    DependencyNotReady {
        process: String,
        dependency: String,
        condition: &'static str,
        waited_ms: u64,
    },
    /// The supervisor is shutting down.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}
