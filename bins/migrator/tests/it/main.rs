//! End-to-end tests of the `migrator` binary and of the schemas it installs, against a real
//! PostgreSQL (see `db_core::testing`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod cli;
mod schemas;
#[cfg(feature = "sled-import")]
mod sled_import;
