//! What every FODI HTTP surface shares about administration: the admin routes controlling an
//! [`orchestrator::Supervisor`] (served by the `supervisor` binary and, next to everything
//! else, by the api-server), bearer-token checks in constant time, and RFC 9457 problem
//! documents, the body of every error response.
//!
//! Architecture invariant: this crate knows HTTP and the orchestrator, nothing of any
//! database. Start reading at [`routes`].

pub mod auth;
mod problem;
pub mod routes;

pub use problem::Problem;
pub use routes::{AdminState, configure};
