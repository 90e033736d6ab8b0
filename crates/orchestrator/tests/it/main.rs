//! The orchestrator with real child processes (a small Python HTTP server, `child.py`):
//! crash and hang recovery, backoff and the restart budget, process groups, dependency order,
//! logs, and concurrent control; and the HTTP health probe against servers that record what
//! it sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control;
mod health;
mod recovery;
mod support;
