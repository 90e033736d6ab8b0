//! What the workspace's tests share and need no database for, written once: a free loopback
//! port, waiting until a condition holds, and the small HTTP server the supervision tests run
//! as their child process (`child.py`, Python's standard library only).
//!
//! A dev-dependency of the crates' and binaries' tests, never a normal dependency. Fixtures
//! that need PostgreSQL (a test database, a user of `public.users`) are
//! `db_core::testing`'s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free loopback port: free when asked, so a child told to bind it a moment later usually
/// gets it. Prefer binding port 0 and reading the port back where the program allows it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("no free loopback port: {error}"))
}

/// Polls `condition` every 20 ms until it holds or `within` has passed; tells which. A
/// synchronous condition is `|| std::future::ready(check())`.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test child: `python3 child.py --port N [--exit-after S] [--lines N] ...`, an HTTP
/// server answering `/health` (see the script for its options).
pub fn child_script() -> String {
    // Found from the running test's package (cargo runs a test in its package's directory)
    // before the path compiled in: a build cache shared between checkouts can hand this
    // crate, compiled in another checkout since removed, to this one unchanged.
    let here = std::env::current_dir()
        .ok()
        .map(|package| package.join("../../crates/test-support/child.py"))
        .filter(|script| script.exists());
    here.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("child.py"))
        .display()
        .to_string()
}
