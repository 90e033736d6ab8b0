//! Integration tests of the AI store against a real PostgreSQL: per-user isolation, TTLs,
//! the stampede guard and invalidation across processes under concurrency, pagination while
//! writers append, search ranking, forgetting a user, maintenance and a bounded-memory export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod conversations;
mod forget;
mod learning;
mod local_tier;
mod maintenance;
mod memory;
mod support;
