//! Integration tests of db-core against a real PostgreSQL (see `db_core::testing`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod direct;
mod errors;
mod lease;
mod migrate;
mod pooling;
mod replica;
mod support;
mod test_db;
mod tls;
