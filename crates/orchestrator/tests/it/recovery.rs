//! Crash, hang and crash-loop recovery, backoff reset, and process groups on stop.

use std::time::{Duration, Instant};

use orchestrator::{ProcessState, RestartBudget, StopSpec, Supervisor};

use crate::support::*;

#[tokio::test]
async fn a_crashed_child_is_restarted_and_healthy_again() {
    let port = free_port();
    let supervisor = Supervisor::new(vec![http_child("web", port, &[])]).unwrap();
    let mut events = supervisor.subscribe();
    supervisor.start("web").await.unwrap();
    let first = wait_state(&supervisor, "web", Duration::from_secs(10), running).await;
    let pid = first.pid().unwrap();

    let killed = Instant::now();
    kill(pid, "KILL");
    let again = wait_state(&supervisor, "web", Duration::from_secs(10), |state| {
        state.is_running() && state.pid() != Some(pid)
    })
    .await;
    let took = killed.elapsed();
    assert!(!alive(pid));
    assert!(took < Duration::from_secs(2), "back in {took:?}");
    let status = supervisor.status("web").unwrap();
    assert_eq!(status.restarts, 1);
    assert!(status.uptime_seconds.is_some() && status.last_health_check_ms.is_some());

    // The events tell the story: running, killed, restarted at once, starting, running.
    let mut story = Vec::new();
    while let Ok(event) = events.try_recv() {
        story.push(event.to.name());
    }
    assert_eq!(
        story,
        ["starting", "running", "backoff", "starting", "running"],
        "{again:?}"
    );
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_hung_child_is_detected_and_restarted() {
    let port = free_port();
    let supervisor = Supervisor::new(vec![http_child("web", port, &[])]).unwrap();
    supervisor.start("web").await.unwrap();
    let pid = wait_state(&supervisor, "web", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    let stopped_at = Instant::now();
    kill(pid, "STOP");
    let unhealthy = wait_state(&supervisor, "web", Duration::from_secs(5), |state| {
        matches!(state, ProcessState::Unhealthy { .. })
    })
    .await;
    assert!(matches!(
        unhealthy,
        ProcessState::Unhealthy { failures: 1.., .. }
    ));
    wait_state(&supervisor, "web", Duration::from_secs(10), |state| {
        state.is_running() && state.pid() != Some(pid)
    })
    .await;
    // Interval 100 ms x threshold 3, plus a probe timeout and the restart.
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(3), "recovered in {took:?}");
    assert!(!alive(pid), "the hung process is gone");
    assert_eq!(supervisor.status("web").unwrap().restarts, 1);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_crash_loop_backs_off_to_the_cap_then_is_fatal_until_started_by_hand() {
    let port = free_port();
    let spec = orchestrator::ProcessSpec {
        budget: RestartBudget {
            max_restarts: 5,
            window: Duration::from_secs(60),
        },
        ..http_child("flaky", port, &["--exit-after", "0.05"])
    };
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    let mut events = supervisor.subscribe();
    supervisor.start("flaky").await.unwrap();
    let fatal = wait_state(&supervisor, "flaky", Duration::from_secs(20), |state| {
        matches!(state, ProcessState::Fatal { .. })
    })
    .await;
    let mut delays = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ProcessState::Backoff { delay_ms, .. } = event.to {
            delays.push(delay_ms);
        }
    }
    // Immediate first restart, then 100 ms doubling to the 400 ms cap; five restarts.
    assert_eq!(delays, [0, 100, 200, 400, 400], "{fatal:?}");
    assert_eq!(supervisor.status("flaky").unwrap().restarts, 5);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        matches!(
            supervisor.status("flaky").unwrap().state,
            ProcessState::Fatal { .. }
        ),
        "fatal stays fatal"
    );

    supervisor.start("flaky").await.unwrap();
    let state = supervisor.status("flaky").unwrap().state;
    assert!(state.is_started(), "started by hand: {state:?}");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_stable_period_resets_the_backoff() {
    let port = free_port();
    let mut spec = http_child("web", port, &[]);
    spec.backoff.reset_after = Duration::from_millis(800);
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    let mut events = supervisor.subscribe();
    supervisor.start("web").await.unwrap();
    let crash = |stable: bool| {
        let supervisor = &supervisor;
        async move {
            let state = wait_state(supervisor, "web", Duration::from_secs(10), running).await;
            if stable {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
            kill(state.pid().unwrap(), "KILL");
            wait_state(supervisor, "web", Duration::from_secs(10), |s| {
                s.pid() != state.pid() && s.is_running()
            })
            .await;
        }
    };
    crash(false).await;
    crash(false).await;
    crash(true).await;
    let mut attempts = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ProcessState::Backoff { attempt, .. } = event.to {
            attempts.push(attempt);
        }
    }
    assert_eq!(
        attempts,
        [1, 2, 1],
        "the third crash came after a stable run"
    );
    supervisor.shutdown().await;
}

fn grandchild_of(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn stop_restart_and_crash_take_the_grandchildren_too() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let port = free_port();
    let spec = http_child(
        "parent",
        port,
        &["--grandchild-pid-file", pid_file.to_str().unwrap()],
    );
    let supervisor = Supervisor::new(vec![spec]).unwrap();

    supervisor.start("parent").await.unwrap();
    let child = wait_state(&supervisor, "parent", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    let grandchild = grandchild_of(&pid_file);
    assert!(alive(grandchild));
    supervisor.stop("parent").await.unwrap();
    assert!(!alive(child));
    assert!(
        eventually(Duration::from_secs(2), || std::future::ready(!alive(
            grandchild
        )))
        .await,
        "stop left grandchild {grandchild} behind"
    );

    supervisor.start("parent").await.unwrap();
    wait_state(&supervisor, "parent", Duration::from_secs(10), running).await;
    let grandchild = grandchild_of(&pid_file);
    supervisor.restart("parent").await.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || std::future::ready(!alive(
            grandchild
        )))
        .await,
        "restart left grandchild {grandchild} behind"
    );

    let child = wait_state(&supervisor, "parent", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grandchild = grandchild_of(&pid_file);
    kill(child, "KILL");
    assert!(
        eventually(Duration::from_secs(2), || std::future::ready(!alive(
            grandchild
        )))
        .await,
        "a crash left grandchild {grandchild} behind"
    );
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_child_ignoring_its_stop_signal_is_killed_after_the_grace_period() {
    let port = free_port();
    let spec = orchestrator::ProcessSpec {
        stop: StopSpec {
            grace: Duration::from_millis(500),
            ..StopSpec::default()
        },
        ..http_child("stubborn", port, &["--ignore-term"])
    };
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    supervisor.start("stubborn").await.unwrap();
    let pid = wait_state(&supervisor, "stubborn", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    let started = Instant::now();
    supervisor.stop("stubborn").await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!alive(pid));
    assert_eq!(
        supervisor.status("stubborn").unwrap().state,
        ProcessState::Stopped
    );
}
