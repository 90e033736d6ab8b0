//! Integration tests of the ledger against a real PostgreSQL, many with concurrent clients.
//! Every test that writes ends by checking the ledger's invariants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batches;
mod checkpoints;
mod concurrency;
mod conn;
mod feed;
mod history;
mod model_check;
mod nfts;
mod pending;
mod rewards;
mod seal;
mod supply;
mod support;
mod transfers;
mod wallets;
