//! The analytics crate against a real PostgreSQL: the recorder under load and through a
//! stopped database, partitions, bucket math, the series cap, the rollup's refresh under
//! readers, and the bridge from the `metrics` facade.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bridge;
mod partitions;
mod queries;
mod recorder;
mod series;
mod stats;
mod support;
