//! Supervision of named processes: spawn, health checks, restart policy with backoff, stop
//! with a grace period, captured logs and state events.
//!
//! Architecture invariant: this crate needs no database and no HTTP server; the `supervisor`
//! and `api-server` binaries compose it with those. It is filled in by the orchestrator work
//! (see docs/architecture.md); today it holds no code.
