//! One state per process, and the events that report its changes.

use std::time::SystemTime;

use serde::Serialize;

/// Where a process is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessState {
    /// Not running, and not to be restarted (never started, or stopped by hand).
    Stopped,
    /// Spawned; its health check has not passed yet.
    Starting { pid: u32 },
    /// Spawned and healthy (or without a health check).
    Running { pid: u32 },
    /// Was running; its health check is failing (not yet past the threshold).
    Unhealthy { pid: u32, failures: u32 },
    /// Waiting before restart number `attempt`.
    Backoff { attempt: u32, delay_ms: u64 },
    /// Being stopped (signal sent, grace running).
    Stopping { pid: u32 },
    /// Exited, and the restart policy says to leave it so.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Restarted more often than its budget allows; stays down until started by hand.
    Fatal { reason: String },
}

impl ProcessState {
    /// A short name, for metrics labels and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting { .. } => "starting",
            Self::Running { .. } => "running",
            Self::Unhealthy { .. } => "unhealthy",
            Self::Backoff { .. } => "backoff",
            Self::Stopping { .. } => "stopping",
            Self::Exited { .. } => "exited",
            Self::Fatal { .. } => "fatal",
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Starting { pid }
            | Self::Running { pid }
            | Self::Unhealthy { pid, .. }
            | Self::Stopping { pid } => Some(*pid),
            _ => None,
        }
    }

    /// Spawned, healthy or not.
    pub fn is_started(&self) -> bool {
        self.pid().is_some() && !matches!(self, Self::Stopping { .. })
    }

    /// Running and healthy.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    /// Counts for the `orchestrator_up` gauge.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Running { .. } | Self::Unhealthy { .. })
    }
}

/// A change of one process's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessEvent {
    pub process: String,
    pub from: ProcessState,
    pub to: ProcessState,
    /// Why, in a few words ("exited with status 1", "health check failed 3 times", ...).
    pub reason: String,
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
}

/// What `status` reports of a process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    #[serde(flatten)]
    pub state: ProcessState,
    /// Automatic restarts since the supervisor started.
    pub restarts: u64,
    /// Seconds since it became running, while it is.
    pub uptime_seconds: Option<f64>,
    /// Latency of the last health check, in milliseconds.
    pub last_health_check_ms: Option<f64>,
}

mod unix_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub fn serialize<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0);
        serializer.serialize_u64(millis)
    }
}
