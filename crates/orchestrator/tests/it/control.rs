//! Dependency order, logs, concurrent control, bad specs, and a dropped supervisor.

use std::sync::Arc;
use std::time::Duration;

use orchestrator::{
    Dependency, DependencyCondition, OrchestratorError, ProcessSpec, Stream, Supervisor,
};

use crate::support::*;

fn depending(mut spec: ProcessSpec, on: &str, condition: DependencyCondition) -> ProcessSpec {
    spec.depends_on.push(Dependency {
        name: on.to_owned(),
        condition,
    });
    spec
}

#[tokio::test]
async fn dependencies_start_first_and_stop_last() {
    let specs = vec![
        depending(
            http_child("api", free_port(), &[]),
            "cache",
            DependencyCondition::Started,
        ),
        depending(
            http_child("cache", free_port(), &[]),
            "db",
            DependencyCondition::Healthy,
        ),
        http_child("db", free_port(), &[]),
    ];
    let supervisor = Supervisor::new(specs).unwrap();
    let mut events = supervisor.subscribe();
    supervisor.start_all().await.unwrap();
    for name in ["db", "cache", "api"] {
        wait_state(&supervisor, name, Duration::from_secs(10), running).await;
    }
    supervisor.shutdown().await;

    let mut log = Vec::new();
    while let Ok(event) = events.try_recv() {
        log.push((event.process, event.to.name()));
    }
    let position = |process: &str, state: &str| {
        log.iter()
            .position(|(p, s)| p == process && *s == state)
            .unwrap_or_else(|| panic!("no {process} {state} in {log:?}"))
    };
    assert!(
        position("db", "running") < position("cache", "starting"),
        "cache waited for a healthy db"
    );
    assert!(position("cache", "starting") < position("api", "starting"));
    assert!(position("api", "stopping") < position("cache", "stopping"));
    assert!(position("cache", "stopping") < position("db", "stopping"));
    assert_eq!(
        supervisor
            .list()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["db", "cache", "api"]
    );

    // Starting one process by hand starts what it needs first.
    supervisor.start("api").await.unwrap();
    assert!(supervisor.status("db").unwrap().state.is_running());
    supervisor.shutdown().await;
}

#[tokio::test]
async fn the_ring_buffer_holds_the_last_lines_of_both_streams() {
    let mut spec = http_child("chatty", free_port(), &["--lines", "50"]);
    spec.logs.ring_lines = 10;
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    supervisor.start("chatty").await.unwrap();
    wait_state(&supervisor, "chatty", Duration::from_secs(10), running).await;
    assert!(
        eventually(Duration::from_secs(2), || std::future::ready(
            supervisor
                .logs("chatty", 100)
                .unwrap()
                .iter()
                .any(|line| line.stream == Stream::Stderr)
        ))
        .await
    );
    let lines = supervisor.logs("chatty", 100).unwrap();
    assert_eq!(lines.len(), 10);
    let texts: Vec<&str> = lines.iter().map(|line| line.line.as_str()).collect();
    assert!(
        texts.contains(&"child started") && texts.contains(&"a warning"),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"line 49") && !texts.contains(&"line 0"),
        "{texts:?}"
    );
    assert_eq!(supervisor.logs("chatty", 2).unwrap().len(), 2);
    supervisor.shutdown().await;
}

fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            alive(*pid)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .collect()
}

#[tokio::test]
async fn concurrent_control_requests_serialise_and_leave_one_child() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started").display().to_string();
    let port = free_port();
    let supervisor = Arc::new(
        Supervisor::new(vec![http_child("web", port, &["--started-file", &marker])]).unwrap(),
    );
    let mut requests = Vec::new();
    for n in 0..30 {
        let supervisor = supervisor.clone();
        requests.push(tokio::spawn(async move {
            match n % 3 {
                0 => supervisor.start("web").await,
                1 => supervisor.stop("web").await,
                _ => supervisor.restart("web").await,
            }
        }));
    }
    for request in requests {
        request.await.unwrap().unwrap();
    }
    supervisor.start("web").await.unwrap();
    let pid = wait_state(&supervisor, "web", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || std::future::ready(
            processes_with(&marker) == [pid]
        ))
        .await,
        "exactly one child: {:?} (current {pid})",
        processes_with(&marker)
    );
    supervisor.shutdown().await;
    assert!(
        eventually(Duration::from_secs(3), || std::future::ready(
            processes_with(&marker).is_empty()
        ))
        .await
    );
}

#[tokio::test]
async fn bad_specs_and_unknown_names_are_typed_errors() {
    assert!(matches!(
        Supervisor::new(vec![
            ProcessSpec::new("a", "true"),
            ProcessSpec::new("a", "true")
        ]),
        Err(OrchestratorError::DuplicateProcess(_))
    ));
    assert!(matches!(
        Supervisor::new(vec![depending(
            ProcessSpec::new("a", "true"),
            "ghost",
            DependencyCondition::Started
        )]),
        Err(OrchestratorError::UnknownDependency { .. })
    ));
    assert!(matches!(
        Supervisor::new(vec![ProcessSpec::new("bad name", "true")]),
        Err(OrchestratorError::InvalidSpec { .. })
    ));
    let supervisor =
        Supervisor::new(vec![ProcessSpec::new("missing", "/nonexistent/program")]).unwrap();
    assert!(matches!(
        supervisor.start("missing").await,
        Err(OrchestratorError::StartFailed { .. })
    ));
    assert!(matches!(
        supervisor.stop("ghost").await,
        Err(OrchestratorError::UnknownProcess(_))
    ));
}

#[tokio::test]
async fn dropping_the_supervisor_stops_its_processes_and_their_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    let supervisor = Supervisor::new(vec![http_child(
        "web",
        free_port(),
        &["--grandchild-pid-file", pid_file.to_str().unwrap()],
    )])
    .unwrap();
    supervisor.start("web").await.unwrap();
    let pid = wait_state(&supervisor, "web", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    drop(supervisor);
    assert!(
        eventually(Duration::from_secs(5), || std::future::ready(
            !alive(pid) && !alive(grandchild)
        ))
        .await
    );
}

#[tokio::test]
async fn a_child_gets_its_spec_and_the_allow_list_but_none_of_the_supervisors_variables() {
    // Cargo gives this test process CARGO_* variables: they stand for the supervisor's own
    // settings (tokens, database URLs), which a child must not see unless its spec names them.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let mut spec = ProcessSpec::new("env", "/bin/sleep").args(["30"]);
    spec.env.insert("GIVEN".into(), "by the spec".into());
    spec.inherit_env.push("CARGO_PKG_NAME".into());
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    supervisor.start("env").await.unwrap();
    let pid = wait_state(&supervisor, "env", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();

    let environ = environ_of(pid).await;
    let variables: std::collections::BTreeMap<String, String> = environ
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect();
    assert_eq!(
        variables.get("GIVEN").map(String::as_str),
        Some("by the spec")
    );
    assert_eq!(
        variables.get("CARGO_PKG_NAME").map(String::as_str),
        Some("orchestrator"),
        "named by inherit_env"
    );
    assert_eq!(variables.get("PATH"), std::env::var("PATH").ok().as_ref());
    let leaked: Vec<&String> = variables
        .keys()
        .filter(|key| {
            !orchestrator::BASE_ENV.contains(&key.as_str())
                && !key.starts_with("LC_")
                && !["GIVEN", "CARGO_PKG_NAME"].contains(&key.as_str())
        })
        .collect();
    assert!(leaked.is_empty(), "the child inherited {leaked:?}");
    supervisor.stop("env").await.unwrap();
}

/// `user`: the child runs as that account, with its HOME; an unknown account is refused when
/// the supervisor is built, not at the first start.
#[tokio::test]
async fn a_process_with_a_user_runs_as_that_user() {
    let unknown = Supervisor::new(vec![ProcessSpec {
        user: Some("no-such-user-of-fodi".into()),
        ..ProcessSpec::new("ghost-user", "/bin/sleep")
    }]);
    assert!(
        matches!(&unknown, Err(OrchestratorError::InvalidSpec { reason, .. }) if reason.contains("does not exist")),
        "{:?}",
        unknown.err()
    );

    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let spec = ProcessSpec {
        user: Some("nobody".into()),
        ..ProcessSpec::new("as-nobody", "/bin/sleep").args(["30"])
    };
    let supervisor = Supervisor::new(vec![spec]).unwrap();
    let started = supervisor.start("as-nobody").await;
    if !nix::unistd::geteuid().is_root() {
        // Only root may switch users: the refusal says why.
        let error = started.unwrap_err().to_string();
        assert!(error.contains("Operation not permitted"), "{error}");
        return;
    }
    started.unwrap();
    let pid = wait_state(&supervisor, "as-nobody", Duration::from_secs(10), running)
        .await
        .pid()
        .unwrap();
    // Real, effective, saved and filesystem ids, as /proc shows them.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |field: &str| -> Vec<String> {
        let line = status.lines().find(|line| line.starts_with(field)).unwrap();
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(ids("Uid:"), vec![nobody.uid.to_string(); 4]);
    assert_eq!(ids("Gid:"), vec![nobody.gid.to_string(); 4]);
    let environ = environ_of(pid).await;
    let home = format!("HOME={}", nobody.dir.display());
    assert!(
        environ
            .split(|byte| *byte == 0)
            .any(|entry| entry == home.as_bytes()),
        "the child's HOME is the user's"
    );
    supervisor.stop("as-nobody").await.unwrap();
}
