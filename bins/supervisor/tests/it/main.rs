//! The supervisor binary end to end: real child processes, the control API over HTTP with its
//! token, `supervisor ctl`, `/metrics`, and a SIGTERM that leaves no process behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789";

use test_support::{child_script, free_port};

struct Running {
    child: Child,
    dir: tempfile::TempDir,
    control: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn config(&self) -> PathBuf {
        self.dir.path().join("supervisor.toml")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.control)
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .arg("ctl")
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("SUPERVISOR_TOKEN")
            .env_remove("SUPERVISOR_URL")
            .output()
            .unwrap()
    }

    fn status_json(&self, name: &str) -> serde_json::Value {
        let output = self.ctl(&["--json", "status", name]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn wait_state(&self, name: &str, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status_json(name);
            if status["state"] == state {
                return status;
            }
            assert!(Instant::now() < deadline, "{name} is {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_supervisor() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let control = free_port();
    let marker = dir.path().join("started");
    let config = format!(
        r#"
[control]
listen = "127.0.0.1:{control}"
token = "{TOKEN}"

[[process]]
name = "backend"
command = "/usr/bin/python3"
args = ["{script}", "--port", "{backend}", "--started-file", "{marker}", "--grandchild-pid-file", "{grandchild}"]
depends_on = [{{ name = "cache", condition = "healthy" }}]
[process.health]
kind = "http"
url = "http://127.0.0.1:{backend}/health"
interval = "100ms"
[process.stop]
grace = "2s"

[[process]]
name = "cache"
command = "/usr/bin/python3"
args = ["{script}", "--port", "{cache}", "--started-file", "{marker}", "--lines", "5"]
[process.health]
kind = "tcp"
address = "127.0.0.1:{cache}"
interval = "100ms"
"#,
        script = child_script(),
        backend = free_port(),
        cache = free_port(),
        marker = marker.display(),
        grandchild = dir.path().join("grandchild").display(),
    );
    std::fs::write(dir.path().join("supervisor.toml"), config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["run", "--config"])
        .arg(dir.path().join("supervisor.toml"))
        .env_remove("SUPERVISOR_TOKEN")
        .spawn()
        .unwrap();
    let running = Running {
        child,
        dir,
        control,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", control)).is_err() {
        assert!(Instant::now() < deadline, "the control API never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

/// Pids of live processes whose command line mentions `marker`.
fn processes_mentioning(marker: &Path) -> Vec<u32> {
    let marker = marker.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| {
                    stat.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&marker))
        })
        .collect()
}

fn http(method: &str, url: &str, token: Option<&str>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = match (method, token) {
        ("POST", Some(token)) => agent
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_empty(),
        ("POST", None) => agent.post(url).send_empty(),
        (_, Some(token)) => agent
            .get(url)
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
        (_, None) => agent.get(url).call(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.into_body().read_to_string().unwrap(),
    )
}

#[test]
fn the_supervisor_runs_controls_and_stops_its_processes() {
    let supervisor = start_supervisor();
    supervisor.wait_state("cache", "running");
    let backend = supervisor.wait_state("backend", "running");
    let grandchild: u32 = std::fs::read_to_string(supervisor.dir.path().join("grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The table, in dependency order.
    let table = supervisor.ctl(&["status"]);
    let table = String::from_utf8(table.stdout).unwrap();
    let cache_line = table.find("cache").unwrap();
    assert!(cache_line < table.find("backend").unwrap(), "{table}");

    // Control through ctl.
    assert!(supervisor.ctl(&["stop", "backend"]).status.success());
    assert_eq!(supervisor.status_json("backend")["state"], "stopped");
    let restarted = supervisor.ctl(&["--json", "restart", "backend"]);
    assert!(restarted.status.success());
    let after: serde_json::Value = serde_json::from_slice(&restarted.stdout).unwrap();
    assert_ne!(after["pid"], backend["pid"]);
    supervisor.wait_state("backend", "running");
    let logs = supervisor.ctl(&["logs", "cache", "--lines", "3"]);
    assert_eq!(String::from_utf8(logs.stdout).unwrap().lines().count(), 3);
    let unknown = supervisor.ctl(&["start", "ghost"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("No such process"));

    // The token is required; errors are problem documents.
    let (status, content_type, _) = http("GET", &supervisor.url("/api/v1/admin/processes"), None);
    assert_eq!(
        (status, content_type.as_str()),
        (401, "application/problem+json")
    );
    let (status, _, _) = http(
        "POST",
        &supervisor.url("/api/v1/admin/processes/backend/stop"),
        Some("not-the-token-at-all"),
    );
    assert_eq!(status, 401);
    assert_eq!(supervisor.status_json("backend")["state"], "running");
    let (status, content_type, body) = http(
        "GET",
        &supervisor.url("/api/v1/admin/processes/ghost"),
        Some(TOKEN),
    );
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
    assert!(body.contains("/problems/unknown-process"), "{body}");
    let (status, _, _) = http(
        "GET",
        &supervisor.url("/api/v1/admin/processes/cache/logs?lines=0"),
        Some(TOKEN),
    );
    assert_eq!(status, 400);

    let (status, _, metrics) = http("GET", &supervisor.url("/metrics"), None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("orchestrator_up{process=\"backend\"} 1"),
        "{metrics}"
    );

    // SIGTERM: everything stops, grandchildren included, and the supervisor exits cleanly.
    let marker = supervisor.dir.path().to_path_buf();
    let own = supervisor.child.id();
    let children: Vec<u32> = processes_mentioning(&marker)
        .into_iter()
        .filter(|pid| *pid != own)
        .collect();
    assert_eq!(children.len(), 2, "backend and cache: {children:?}");
    let mut supervisor = supervisor;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exited = supervisor.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(processes_mentioning(&marker).is_empty(), "left behind");
    assert!(
        !Path::new(&format!("/proc/{grandchild}")).exists() || {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            stat.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        }
    );
}

#[test]
fn a_configuration_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, "[[process]]\nname = \"x\"\ncommand = \"true\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("SUPERVISOR_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no control token"));
}

/// `supervisor check`: what `run` would refuse, refused without starting anything.
#[test]
fn check_validates_a_configuration_without_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let check = |body: String| {
        let path = dir.path().join("supervisor.toml");
        std::fs::write(&path, body).unwrap();
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .args(["check", "--config"])
            .arg(&path)
            .env_remove("SUPERVISOR_TOKEN")
            .output()
            .unwrap()
    };
    let process = format!(
        "[[process]]\nname = \"touch\"\ncommand = \"touch\"\nargs = [\"{}\"]\n",
        marker.display()
    );
    let valid = check(format!(
        "[control]\ntoken = \"0123456789abcdef\"\n{process}"
    ));
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    assert!(String::from_utf8_lossy(&valid.stdout).contains("1 process(es): touch"));
    assert!(!marker.exists(), "check started nothing");

    let unknown_user = check(format!(
        "[control]\ntoken = \"0123456789abcdef\"\n{process}user = \"no-such-user-of-fodi\"\n"
    ));
    assert_eq!(unknown_user.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown_user.stderr).contains("does not exist"));

    let cycle = check(
        "[control]\ntoken = \"0123456789abcdef\"\n\
         [[process]]\nname = \"a\"\ncommand = \"true\"\ndepends_on = [{ name = \"b\" }]\n\
         [[process]]\nname = \"b\"\ncommand = \"true\"\ndepends_on = [{ name = \"a\" }]\n"
            .to_owned(),
    );
    assert_eq!(cycle.status.code(), Some(1));
    let no_token = check(process);
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no control token"));
}

#[test]
fn the_control_api_serves_https_and_ctl_checks_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let issued = test_support::Certificates::issue(&["localhost", "127.0.0.1"]);
    let other = test_support::Certificates::issue(&["localhost"]);
    for (name, text) in [
        ("ca.crt", &issued.ca),
        ("other-ca.crt", &other.ca),
        ("server.crt", &issued.certificate),
        ("server.key", &issued.key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let control = free_port();
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[control]
listen = "127.0.0.1:{control}"
token = "{TOKEN}"
ca_file = "{dir}/ca.crt"
tls = {{ cert_file = "{dir}/server.crt", key_file = "{dir}/server.key" }}

[[process]]
name = "idle"
command = "/bin/sleep"
args = ["60"]
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("SUPERVISOR_TOKEN")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", control)).is_err() {
        assert!(Instant::now() < deadline, "the control API never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ctl = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_supervisor"))
            .arg("ctl")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .args(["--json", "status", "idle"])
            .env_remove("SUPERVISOR_TOKEN")
            .env_remove("SUPERVISOR_URL")
            .output()
            .unwrap()
    };

    // ctl reaches it over HTTPS, trusting the configured CA.
    let status = ctl(&[]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(answer["name"], "idle");

    // A CA that issued nothing here: refused, before any token is sent.
    let other = dir.path().join("other-ca.crt");
    let refused = ctl(&["--ca-file", other.to_str().unwrap()]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("cannot reach the supervisor"), "{message}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = ureq::get(&format!("http://127.0.0.1:{control}/health")).call();
    assert!(plain.is_err(), "{plain:?}");

    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_binary_tells_its_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("supervisor {}", env!("CARGO_PKG_VERSION"))
    );
}
