//! What every FODI HTTP surface shares about administration: the admin routes controlling an
//! [`orchestrator::Supervisor`] (served by the `supervisor` binary and, next to everything
//! else, by the api-server) and bearer-token checks in constant time. Its errors are
//! `http_problem::Problem` documents.
//!
//! Architecture invariant: this crate knows HTTP and the orchestrator, nothing of any
//! database. Start reading at [`routes`].

pub mod auth;
pub mod exposition;
pub mod routes;

pub use routes::{AdminState, configure};
