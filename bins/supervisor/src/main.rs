//! `supervisor run --config supervisor.toml`: keeps the configured processes alive and healthy
//! and serves their control API. The orchestrator work fills this in (see
//! docs/architecture.md); until then the binary says so and exits with status 1.
#![allow(clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    eprintln!("supervisor: process supervision is not built yet; see docs/architecture.md");
    std::process::ExitCode::FAILURE
}
