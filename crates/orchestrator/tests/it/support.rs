//! Specs of the test child, and waiting for what the supervisor reports.

use std::time::{Duration, Instant};

use orchestrator::{
    Backoff, HealthCheck, HealthProbe, ProcessSpec, ProcessState, StopSpec, Supervisor,
};

pub use test_support::{child_script, eventually, free_port};

/// The test child as process `name`, serving health on `port`, with fast checks.
pub fn http_child(name: &str, port: u16, extra: &[&str]) -> ProcessSpec {
    let mut args = vec![child_script(), "--port".into(), port.to_string()];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    ProcessSpec {
        health: HealthCheck {
            probe: HealthProbe::Http {
                url: format!("http://127.0.0.1:{port}/health"),
                expected_status: 200,
            },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            failure_threshold: 3,
            start_grace: Duration::from_secs(5),
        },
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(60),
        },
        stop: StopSpec {
            grace: Duration::from_secs(2),
            ..StopSpec::default()
        },
        ..ProcessSpec::new(name, "/usr/bin/python3").args(args)
    }
}

/// Waits until `name`'s state satisfies `condition`; panics after `within`.
pub async fn wait_state(
    supervisor: &Supervisor,
    name: &str,
    within: Duration,
    condition: impl Fn(&ProcessState) -> bool,
) -> ProcessState {
    let deadline = Instant::now() + within;
    loop {
        let state = supervisor.status(name).unwrap().state;
        if condition(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still {state:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn running(state: &ProcessState) -> bool {
    state.is_running()
}

/// Whether a process with this pid exists (and is not a zombie).
/// A child's environment as `/proc` shows it (`NAME=value` entries, NUL-separated). The spawn
/// returns once the child's exec has begun, before the kernel has laid out the new program's
/// environment: until then the file reads empty, so this waits for content.
pub async fn environ_of(pid: u32) -> Vec<u8> {
    let read = || std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            !read().is_empty()
        ))
        .await,
        "the environment of {pid} stayed empty"
    );
    read()
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
