//! The `supervisor` binary against supervisord (Debian's package) on the same child, on the
//! same machine, in the same run:
//!
//! 1. `crash_to_healthy`: `kill -9` of the child until its HTTP endpoint answers again,
//!    alternating the two supervisors, median over the repetitions;
//! 2. `hang_to_healthy`: SIGSTOP of the child until it answers again (supervisord never
//!    does: it has no health checks), against interval x threshold + our crash recovery;
//! 3. `idle_cpu` and `idle_rss`: each supervisor with 10 children, idle.
//!
//! The child is `python3 -m http.server`. Ours checks its health every second (3 failures
//! make a hang, each check given 250 ms) and uses `reset_after = 1s`, supervisord with `autorestart=true` and its
//! default `startsecs=1`: both count a process that ran for a second as stably started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use orchestrator::HealthProbe;

use crate::compare::{median, record};
use crate::programs::{release_binary, which};
use crate::report::{Measurement, progress};

pub struct Options {
    pub repetitions: usize,
    pub hang_repetitions: usize,
}

const AREA: &str = "supervisor";
const TOKEN: &str = "bench-token-0123456789";
const PYTHON: &str = "/usr/bin/python3";
/// Between repetitions: longer than both supervisors' notion of a stable start.
const SETTLE: Duration = Duration::from_millis(1_500);
/// How long supervisord is given to notice a hang.
const HANG_PATIENCE: Duration = Duration::from_secs(10);
const HEALTH_INTERVAL_MS: u64 = 1_000;
const FAILURE_THRESHOLD: u64 = 3;
/// A loopback health endpoint answers in well under a millisecond; a check that takes this
/// long has failed.
const HEALTH_TIMEOUT_MS: u64 = 250;
const IDLE_PROCESSES: usize = 10;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Measurement>> {
    let ours_binary = release_binary("supervisor")?;
    which("supervisord").context("supervisord is needed (Debian: apt-get install supervisor)")?;
    let dir = tempfile::Builder::new()
        .prefix("fodi-bench-supervisor-")
        .tempdir()?;
    let mut measurements = Vec::new();

    let ours_port = free_port()?;
    let theirs_port = free_port()?;
    let ours = Ours::start(&ours_binary, dir.path(), &[ours_port])?;
    let theirs = Supervisord::start(dir.path(), &[theirs_port])?;
    answering(ours_port, Duration::from_secs(15)).await?;
    answering(theirs_port, Duration::from_secs(15)).await?;
    tokio::time::sleep(SETTLE).await;

    progress(&format!(
        "scenario 1: kill -9 until answering again, {} repetitions each",
        options.repetitions
    ));
    let (mut our_times, mut their_times) = (Vec::new(), Vec::new());
    for round in 1..=options.repetitions {
        let ours_ms = crash_and_time(ours.child_pid(0)?, ours_port).await?;
        tokio::time::sleep(SETTLE).await;
        let theirs_ms = crash_and_time(theirs.child_pid(0)?, theirs_port).await?;
        tokio::time::sleep(SETTLE).await;
        progress(&format!(
            "  round {round}: ours {ours_ms:.0} ms, supervisord {theirs_ms:.0} ms"
        ));
        our_times.push(ours_ms);
        their_times.push(theirs_ms);
    }
    let ours_crash = median(our_times.clone());
    record(
        &mut measurements,
        Measurement::new(AREA, "crash_to_healthy", "median_ms", ours_crash)
            .against(
                "supervisord_crash_to_healthy",
                median(their_times.clone()),
                0.15,
            )
            .lower_is_better()
            .with("repetitions", options.repetitions as u64)
            .with("ours_min_ms", min(&our_times))
            .with("ours_max_ms", max(&our_times))
            .with("supervisord_min_ms", min(&their_times))
            .with("supervisord_max_ms", max(&their_times)),
    );

    progress("scenario 2: SIGSTOP until answering again");
    let mut hang_times = Vec::new();
    for round in 1..=options.hang_repetitions {
        let pid = ours.child_pid(0)?;
        let started = Instant::now();
        signal(pid, "STOP")?;
        let recovered = poll_until_answering(ours_port, Duration::from_secs(30)).await;
        let ms = recovered
            .map(|_| started.elapsed().as_secs_f64() * 1_000.0)
            .context("ours never recovered from a hang")?;
        progress(&format!("  round {round}: ours {ms:.0} ms"));
        hang_times.push(ms);
        tokio::time::sleep(SETTLE).await;
    }
    let pid = theirs.child_pid(0)?;
    signal(pid, "STOP")?;
    let theirs_recovered = poll_until_answering(theirs_port, HANG_PATIENCE)
        .await
        .is_some();
    signal(pid, "CONT")?;
    progress(&format!(
        "  supervisord: {} within {HANG_PATIENCE:?}",
        if theirs_recovered {
            "recovered"
        } else {
            "never recovered"
        }
    ));
    let bound = (HEALTH_INTERVAL_MS * FAILURE_THRESHOLD) as f64 + ours_crash;
    record(
        &mut measurements,
        Measurement::new(
            AREA,
            "hang_to_healthy",
            "median_ms",
            median(hang_times.clone()),
        )
        .against("interval_x_threshold_plus_restart", bound, 1.0)
        .lower_is_better()
        .with("repetitions", options.hang_repetitions as u64)
        .with("ours_max_ms", max(&hang_times))
        .with("supervisord_recovered", theirs_recovered)
        .with("supervisord_patience_s", HANG_PATIENCE.as_secs()),
    );
    drop(ours);
    drop(theirs);

    progress(&format!(
        "scenario 3: idle, {IDLE_PROCESSES} supervised processes each"
    ));
    let ours_ports: Vec<u16> = (0..IDLE_PROCESSES)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let theirs_ports: Vec<u16> = (0..IDLE_PROCESSES)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let idle_dir = tempfile::Builder::new()
        .prefix("fodi-bench-idle-")
        .tempdir()?;
    let ours = Ours::start(&ours_binary, idle_dir.path(), &ours_ports)?;
    let theirs = Supervisord::start(idle_dir.path(), &theirs_ports)?;
    for port in ours_ports.iter().chain(&theirs_ports) {
        answering(*port, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(30);
    let (ours_cpu, theirs_cpu) = tokio::join!(
        cpu_percent(ours.pid(), window),
        cpu_percent(theirs.pid(), window)
    );
    let (ours_cpu, theirs_cpu) = (ours_cpu?, theirs_cpu?);
    let (ours_rss, theirs_rss) = (rss_kib(ours.pid())?, rss_kib(theirs.pid())?);
    record(
        &mut measurements,
        Measurement::new(AREA, "idle_cpu", "cpu_percent", ours_cpu)
            .against("supervisord_idle_cpu", theirs_cpu, 1.0)
            .lower_is_better()
            .informational()
            // One clock tick (1/100 s) over the window: the smallest figure above zero.
            .with("resolution_percent", 1.0 / window.as_secs_f64())
            .with("processes", IDLE_PROCESSES as u64)
            .with("window_s", window.as_secs()),
    );
    record(
        &mut measurements,
        Measurement::new(AREA, "idle_rss", "rss_kib", ours_rss as f64)
            .against("supervisord_idle_rss", theirs_rss as f64, 1.0)
            .lower_is_better()
            .informational()
            .with("processes", IDLE_PROCESSES as u64),
    );
    Ok(measurements)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http_server_args(port: u16) -> Vec<String> {
    [
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Our supervisor binary, killed when dropped.
struct Ours {
    child: Child,
    control: u16,
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

impl Ours {
    fn start(binary: &Path, dir: &Path, ports: &[u16]) -> anyhow::Result<Self> {
        let control = free_port()?;
        let mut config =
            format!("[control]\nlisten = \"127.0.0.1:{control}\"\ntoken = \"{TOKEN}\"\n");
        for (n, port) in ports.iter().enumerate() {
            let args: Vec<String> = http_server_args(*port)
                .iter()
                .map(|arg| format!("{arg:?}"))
                .collect();
            config.push_str(&format!(
                "\n[[process]]\nname = \"web{n}\"\ncommand = \"{PYTHON}\"\nargs = [{}]\n\
                 [process.health]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n\
                 interval = \"{HEALTH_INTERVAL_MS}ms\"\ntimeout = \"{HEALTH_TIMEOUT_MS}ms\"\n\
                 failure_threshold = {FAILURE_THRESHOLD}\n\
                 [process.backoff]\nreset_after = \"1s\"\n\
                 [process.budget]\nmax_restarts = 1000\n",
                args.join(", ")
            ));
        }
        let path = dir.join(format!("supervisor-{control}.toml"));
        std::fs::write(&path, config)?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the supervisor binary")?;
        Ok(Self { child, control })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid of process `web{n}`, from the control API.
    fn child_pid(&self, n: usize) -> anyhow::Result<u32> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer: serde_json::Value = agent
                .get(&format!(
                    "http://127.0.0.1:{}/api/v1/admin/processes/web{n}",
                    self.control
                ))
                .header("Authorization", &format!("Bearer {TOKEN}"))
                .call()?
                .into_body()
                .read_json()?;
            if answer["state"] == "running"
                && let Some(pid) = answer["pid"].as_u64()
            {
                return Ok(pid as u32);
            }
            if Instant::now() > deadline {
                bail!("web{n} is not running: {answer}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A private supervisord (`-n`, its own socket), killed when dropped.
struct Supervisord {
    child: Child,
    config: PathBuf,
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

impl Supervisord {
    fn start(dir: &Path, ports: &[u16]) -> anyhow::Result<Self> {
        let socket = dir.join(format!("supervisord-{}.sock", ports[0]));
        let mut config = format!(
            "[unix_http_server]\nfile={socket}\n\n[supervisord]\nnodaemon=true\nuser=root\n\
             pidfile={dir}/supervisord-{port}.pid\nlogfile={dir}/supervisord-{port}.log\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{socket}\n",
            socket = socket.display(),
            dir = dir.display(),
            port = ports[0],
        );
        for (n, port) in ports.iter().enumerate() {
            config.push_str(&format!(
                "\n[program:web{n}]\ncommand={PYTHON} {}\nautorestart=true\nstdout_logfile=NONE\n\
                 stderr_logfile=NONE\n",
                http_server_args(*port).join(" ")
            ));
        }
        let path = dir.join(format!("supervisord-{}.conf", ports[0]));
        std::fs::write(&path, config)?;
        let child = Command::new("supervisord")
            .args(["-n", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start supervisord")?;
        Ok(Self {
            child,
            config: path,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn child_pid(&self, n: usize) -> anyhow::Result<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = Command::new("supervisorctl")
                .arg("-c")
                .arg(&self.config)
                .args(["pid", &format!("web{n}")])
                .output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            if let Ok(pid) = text.trim().parse::<u32>()
                && pid > 0
            {
                return Ok(pid);
            }
            if Instant::now() > deadline {
                bail!("supervisord's web{n} has no pid: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// Kills `pid` and returns the milliseconds until the port answers HTTP again.
async fn crash_and_time(pid: u32, port: u16) -> anyhow::Result<f64> {
    let started = Instant::now();
    signal(pid, "KILL")?;
    poll_until_answering(port, Duration::from_secs(30))
        .await
        .map(|_| started.elapsed().as_secs_f64() * 1_000.0)
        .context("the child never answered again")
}

/// Polls `GET /` every 5 ms (each attempt bounded by 200 ms) until it answers 200.
async fn poll_until_answering(port: u16, patience: Duration) -> Option<Duration> {
    let probe = HealthProbe::Http {
        url: format!("http://127.0.0.1:{port}/"),
        expected_status: 200,
    };
    let started = Instant::now();
    while started.elapsed() < patience {
        let (result, _) = orchestrator::health::check(&probe, Duration::from_millis(200)).await;
        if result == orchestrator::health::ProbeResult::Healthy {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn answering(port: u16, patience: Duration) -> anyhow::Result<()> {
    poll_until_answering(port, patience)
        .await
        .map(drop)
        .with_context(|| format!("nothing answered on port {port}"))
}

/// CPU used by `pid` over `window`, in percent of one core.
async fn cpu_percent(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(window).await;
    let after = cpu_ticks(pid)?;
    // Linux reports in clock ticks of 1/100 s.
    Ok((after - before) as f64 / 100.0 / window.as_secs_f64() * 100.0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3 of the line, utime 14 and stime 15.
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .context("short /proc stat line")?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}
