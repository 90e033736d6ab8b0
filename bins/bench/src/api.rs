//! The api-server over HTTP against the library-level rate of the same operation, measured
//! in the same run on the same cluster:
//!
//! 1. `http_cache_get_c8`: `GET /api/v1/ai/users/{user}/cache/{key}` (live entries of 1,000
//!    users) by wrk, 8 connections, beside `ResponseCache::get` from 8 tasks, and judged
//!    against the ceiling the two allow on this machine (see [`record_ceiling`]);
//! 2. `http_transfer_c8`: `POST /api/v1/ledger/transfers` (uniform over 1,000 funded
//!    wallets) by wrk, 8 connections, against `Ledger::transfer` from 8 tasks (the server's
//!    sealer seals the transfers meanwhile, behind both sides);
//!
//! each with wrk's p99, and the api-server's resident memory under that load; and
//! `GET /health` by wrk, the HTTP work alone, from which the ceiling of the cache reads on
//! this machine follows (see [`record_ceiling`]). The server is the
//! release `api-server` binary (built by the benchmark from the current sources, or the one
//! `FODI_BENCH_API_SERVER` names) with its default settings, pointed at the benchmark's
//! cluster.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_store::{AiConfig, CacheConfig, PgAiStore, ResponseCache, Ttl, UserId};
use anyhow::{Context, bail};
use db_core::migrate::core_set;
use ledger::{Amount, Ledger, LedgerConfig, PgLedger, TransferRequest, WalletId};

use crate::cluster::{BenchCluster, DATABASE};
use crate::compare::{median, record, wanted};
use crate::load;
use crate::programs::{release_binary, which};
use crate::report::{Measurement, progress};

pub struct Options {
    pub seconds: u64,
    pub rounds: usize,
    /// Scenario names (prefixes) to run: `http_cache_get` (with the ceiling),
    /// `http_transfer`; all when empty. `rss_under_load` comes with either.
    pub only: Vec<String>,
}

const AREA: &str = "api";
const CONNECTIONS: usize = 8;
/// One wrk thread drives the 8 connections well above either scenario's rate (65,000 to
/// 90,000 `GET /health` a second); a second thread only takes CPU from the server and
/// PostgreSQL on the same cores (cache reads measured 10% slower with two).
const WRK_THREADS: &str = "1";
/// `GET /health` measures what the HTTP work alone costs the cores, and one wrk thread cannot
/// keep the server busy on requests that do nothing.
const HEALTH_WRK_THREADS: &str = "2";
const WALLETS: usize = 1_000;
const P99_TARGET_MS: f64 = 10.0;
const RSS_TARGET_KIB: f64 = 100.0 * 1024.0;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Measurement>> {
    // FODI_BENCH_API_SERVER=PATH measures that binary instead (another build, for an A/B of
    // two commits in alternating runs); by default the current sources' release build.
    let binary = match std::env::var_os("FODI_BENCH_API_SERVER") {
        Some(path) => std::path::PathBuf::from(path),
        None => release_binary("api-server")?,
    };
    which("wrk").context("wrk is needed (Debian: apt-get install wrk)")?;
    let bench = BenchCluster::start(
        vec![
            core_set(),
            ai_store::migration_set(),
            ledger::migration_set(),
            analytics::migration_set(),
        ],
        CONNECTIONS as u32 + 4,
    )
    .await?;
    let ledger = Arc::new(PgLedger::new(bench.db.clone(), LedgerConfig::default()));
    let users = bench.create_users(WALLETS).await?;
    let wallets = Arc::new(crate::ledger::fund_wallets(&ledger, &users).await?);
    let ai = PgAiStore::start(
        bench.db.clone(),
        AiConfig {
            cache: CacheConfig {
                connections: CONNECTIONS,
                ..CacheConfig::default()
            },
            ..AiConfig::default()
        },
    )
    .await?;
    for user in &users {
        ai.cache()
            .set(
                UserId(*user),
                "answer",
                &serde_json::json!({ "dishes": ["soup", "bread"], "note": "x".repeat(200) }),
                Ttl::Never,
            )
            .await?;
    }
    let dir = tempfile::Builder::new()
        .prefix("fodi-bench-api-")
        .tempdir()?;
    let server = Server::start(&binary, &bench.cluster.url(DATABASE))?;
    server.wait_ready().await?;

    let transfer_script = dir.path().join("transfer.lua");
    std::fs::write(&transfer_script, transfer_lua(&wallets))?;
    let cache_script = dir.path().join("cache.lua");
    std::fs::write(&cache_script, cache_lua(&users))?;
    let duration = Duration::from_secs(options.seconds);
    let mut measurements = Vec::new();

    let (cache_wanted, transfers_wanted) = (
        wanted(&options.only, "http_cache_get"),
        wanted(&options.only, "http_transfer"),
    );
    progress("warming up");
    if transfers_wanted {
        wrk(&server.url(), &transfer_script, 2)?;
    }
    if cache_wanted {
        wrk(&server.url(), &cache_script, 2)?;
    }

    let mut peak_rss_kib = 0;
    if cache_wanted {
        progress("scenario 1: GET a cached entry, HTTP against the library");
        let cache = compare(&server, &cache_script, options, || {
            library_gets(&ai, &users, duration)
        })
        .await?;
        peak_rss_kib = peak_rss_kib.max(cache.peak_rss_kib);
        progress("ceiling: GET /health, HTTP with no work behind it");
        let health = wrk_with(
            None,
            HEALTH_WRK_THREADS,
            &format!("{}/health", server.url()),
            options.seconds,
        )?;
        let ceiling = record_ceiling(&mut measurements, health.rate, cache.library);
        // wrk, the server and PostgreSQL share this machine's cores: the cached read is judged
        // against what HTTP allows here, the library's rate shown beside it.
        let judged = Reference::new("http_cache_get_ceiling", ceiling, CACHE_GET_CEILING_TARGET);
        cache.record("cache_get", &mut measurements, &[], judged);
    }
    if transfers_wanted {
        progress("scenario 2: POST a transfer, HTTP against the library");
        let transfers = compare(&server, &transfer_script, options, || {
            library_transfers(&ledger, &wallets, duration)
        })
        .await?;
        let judged = Reference::new("library_transfer_c8", transfers.library, 0.7);
        transfers.record(
            "transfer",
            &mut measurements,
            &[("wallets", WALLETS as u64)],
            judged,
        );
        peak_rss_kib = peak_rss_kib.max(transfers.peak_rss_kib);
    }
    record(
        &mut measurements,
        Measurement::new(AREA, "rss_under_load", "rss_kib", peak_rss_kib as f64)
            .against("target_rss_kib", RSS_TARGET_KIB, 1.0)
            .lower_is_better(),
    );
    let report = ledger.check_invariants().await?;
    anyhow::ensure!(
        report.is_ok(),
        "ledger invariants violated: {:?}",
        report.violations
    );
    Ok(measurements)
}

/// What `http_cache_get_c8` must reach of [`record_ceiling`]'s ceiling.
const CACHE_GET_CEILING_TARGET: f64 = 0.75;

/// What the machine allows cache reads over HTTP, measured in the same run: a request costs
/// the HTTP work (all of `GET /health`'s, wrk's included) plus the read; when both share the
/// same cores, a server whose read cost what the library's whole call costs would serve
/// `1 / (1/health + 1/library)`. Recorded against the library, without a target of its own:
/// `http_cache_get_c8` is judged against it. Returns the ceiling.
fn record_ceiling(measurements: &mut Vec<Measurement>, health: f64, library: f64) -> f64 {
    record(
        measurements,
        Measurement::new(AREA, "http_health_c8", "requests_per_s", health).informational(),
    );
    let ceiling = 1.0 / (1.0 / health + 1.0 / library);
    record(
        measurements,
        Measurement::new(AREA, "http_cache_get_ceiling", "requests_per_s", ceiling)
            .against("library_cache_get_c8", library, 0.0)
            .informational(),
    );
    ceiling
}

/// What a scenario's HTTP rate is judged against: a rate of the same run and the ratio to
/// reach.
#[derive(Clone, Copy)]
struct Reference {
    name: &'static str,
    rate: f64,
    target_ratio: f64,
}

impl Reference {
    fn new(name: &'static str, rate: f64, target_ratio: f64) -> Self {
        Self {
            name,
            rate,
            target_ratio,
        }
    }
}

/// One library run: its rate and p99, counted as wrk counts (see
/// [`load::LoadResult::latency_as_wrk_counts`]) so that the two p99s compare, and as measured.
struct Library {
    rate: f64,
    p99_ms: f64,
    measured_p99_ms: f64,
    max_ms: f64,
}

impl From<load::LoadResult> for Library {
    fn from(result: load::LoadResult) -> Self {
        Self {
            rate: result.units_per_second(),
            p99_ms: result.latency_as_wrk_counts().p99_ms,
            measured_p99_ms: result.latency.p99_ms,
            max_ms: result.latency.max_ms,
        }
    }
}

/// One scenario's medians: HTTP and library rates, both p99s, the server's peak memory.
struct Comparison {
    http: f64,
    library: f64,
    p99_ms: f64,
    /// The library's p99 in the same rounds, counted as wrk counts: a stall both sides see is
    /// not the server's.
    library_p99_ms: f64,
    /// ... and as measured, each call once.
    library_measured_p99_ms: f64,
    peak_rss_kib: u64,
}

impl Comparison {
    /// Records `http_{name}_c8` against `judged` (with the library's rate and the ratio to it
    /// beside) and `http_{name}_p99` against 10 ms.
    fn record(
        &self,
        name: &str,
        measurements: &mut Vec<Measurement>,
        extra: &[(&str, u64)],
        judged: Reference,
    ) {
        let mut rate =
            Measurement::new(AREA, format!("http_{name}_c8"), "requests_per_s", self.http)
                .against(judged.name, judged.rate, judged.target_ratio)
                .with(&format!("library_{name}_c8"), self.library.round())
                .with(
                    "ratio_to_library",
                    (self.http / self.library * 1000.0).round() / 1000.0,
                )
                .with("p99_ms", self.p99_ms)
                .with("library_p99_ms", self.library_p99_ms)
                .with("library_measured_p99_ms", self.library_measured_p99_ms);
        for (key, value) in extra {
            rate = rate.with(key, *value);
        }
        record(measurements, rate);
        record(
            measurements,
            Measurement::new(AREA, format!("http_{name}_p99"), "p99_ms", self.p99_ms)
                .against("target_p99_ms", P99_TARGET_MS, 1.0)
                .lower_is_better(),
        );
    }
}

/// Alternates wrk running `script` against the server with `library`, `rounds` times.
async fn compare<F, Fut>(
    server: &Server,
    script: &std::path::Path,
    options: &Options,
    library: F,
) -> anyhow::Result<Comparison>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Library>,
{
    let (mut http, mut libraries, mut p99s, mut peak) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let (mut library_p99s, mut library_measured_p99s) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds.max(1) {
        let (result, rss) = server.under_load(|| wrk(&server.url(), script, options.seconds))?;
        let library = library().await;
        progress(&format!(
            "  round {round}: HTTP {:.0}/s (p99 {:.2} ms), library {:.0}/s (p99 {:.2} ms as wrk counts, {:.2} ms measured, max {:.1} ms)",
            result.rate,
            result.p99_ms,
            library.rate,
            library.p99_ms,
            library.measured_p99_ms,
            library.max_ms
        ));
        http.push(result.rate);
        p99s.push(result.p99_ms);
        libraries.push(library.rate);
        library_p99s.push(library.p99_ms);
        library_measured_p99s.push(library.measured_p99_ms);
        peak = peak.max(rss);
    }
    Ok(Comparison {
        http: median(http),
        library: median(libraries),
        p99_ms: median(p99s),
        library_p99_ms: median(library_p99s),
        library_measured_p99_ms: median(library_measured_p99s),
        peak_rss_kib: peak,
    })
}

async fn library_transfers(
    ledger: &Arc<PgLedger>,
    wallets: &Arc<Vec<WalletId>>,
    duration: Duration,
) -> Library {
    let (ledger, wallets) = (ledger.clone(), wallets.clone());
    load::run(CONNECTIONS, duration, move |_| {
        let (ledger, wallets) = (ledger.clone(), wallets.clone());
        async move {
            let (from, to) = crate::ledger::distinct_pair(&wallets);
            let amount = Amount::new(1)?;
            ledger
                .transfer(TransferRequest::transfer(from, to, amount))
                .await
                .map(|_| 1)
        }
    })
    .await
    .into()
}

async fn library_gets(ai: &PgAiStore, users: &[uuid::Uuid], duration: Duration) -> Library {
    let (cache, users) = (ai.cache().clone(), Arc::new(users.to_vec()));
    load::run(CONNECTIONS, duration, move |_| {
        let (cache, users) = (cache.clone(), users.clone());
        async move {
            let user = users[fastrand::usize(..users.len())];
            match cache.get(UserId(user), "answer").await {
                Ok(Some(_)) => Ok(1),
                Ok(None) => Err("miss".to_owned()),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await
    .into()
}

/// Lua giving each wrk thread its own random sequence (LuaJIT seeds every thread alike).
const SEED_PER_THREAD: &str = r#"local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end"#;

/// wrk's script: transfers of one unit between random wallets. The requests are formatted
/// once, when wrk starts (10,000 random pairs per thread), and taken in turn: Lua formatting a
/// request per call, or a `response` callback (wrk then parses every response for Lua), costs
/// wrk CPU the server's two cores share. A failed transfer still fails the run: wrk counts
/// every non-2xx answer and [`wrk_with`] refuses the run if there is one.
fn transfer_lua(wallets: &[WalletId]) -> String {
    let list: Vec<String> = wallets
        .iter()
        .map(|wallet| format!("\"{wallet}\""))
        .collect();
    format!(
        r#"local wallets = {{{}}}
local requests = {{}}
local turn = 0
{SEED}
init = function(args)
  math.randomseed(thread_number)
  for i = 1, 10000 do
    local from = math.random(#wallets)
    local to = math.random(#wallets - 1)
    if to >= from then to = to + 1 end
    local body = '{{"debit":"' .. wallets[from] .. '","credit":"' .. wallets[to] .. '","amount":"0.000000001"}}'
    requests[i] = wrk.format("POST", "/api/v1/ledger/transfers", {{["Content-Type"] = "application/json"}}, body)
  end
end
request = function()
  turn = turn % #requests + 1
  return requests[turn]
end
"#,
        list.join(","),
        SEED = SEED_PER_THREAD
    )
}

/// wrk's script: GETs of random users' cached entry, formatted once (see [`transfer_lua`]);
/// a miss (404) fails the run.
fn cache_lua(users: &[uuid::Uuid]) -> String {
    let list: Vec<String> = users.iter().map(|user| format!("\"{user}\"")).collect();
    format!(
        r#"local users = {{{}}}
local requests = {{}}
{SEED}
init = function(args)
  math.randomseed(thread_number)
  for i = 1, #users do
    requests[i] = wrk.format("GET", "/api/v1/ai/users/" .. users[i] .. "/cache/answer")
  end
end
request = function()
  return requests[math.random(#requests)]
end
"#,
        list.join(","),
        SEED = SEED_PER_THREAD
    )
}

struct WrkResult {
    rate: f64,
    p99_ms: f64,
}

/// Runs wrk ([`WRK_THREADS`], `CONNECTIONS` connections) with `script` for `seconds`.
fn wrk(base: &str, script: &std::path::Path, seconds: u64) -> anyhow::Result<WrkResult> {
    wrk_with(Some(script), WRK_THREADS, base, seconds)
}

/// Runs wrk (`threads`, `CONNECTIONS` connections) against `url` for `seconds`, with a script
/// making the requests or without one (GETs of `url`).
fn wrk_with(
    script: Option<&std::path::Path>,
    threads: &str,
    url: &str,
    seconds: u64,
) -> anyhow::Result<WrkResult> {
    let mut command = Command::new("wrk");
    command.args([
        "-t",
        threads,
        "-c",
        &CONNECTIONS.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if let Some(errors) = text
        .lines()
        .find(|line| line.contains("Non-2xx or 3xx responses"))
    {
        bail!("wrk saw failed requests: {errors}");
    }
    let rate = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .context("wrk printed no rate")?;
    let p99_ms = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .map(|rest| milliseconds(rest.trim()))
        .transpose()?
        .context("wrk printed no p99")?;
    Ok(WrkResult { rate, p99_ms })
}

/// wrk's durations: `812.00us`, `1.52ms`, `2.01s`.
fn milliseconds(text: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(us) = text.strip_suffix("us") {
        (us, 0.001)
    } else if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1_000.0)
    } else {
        bail!("unknown duration {text:?}");
    };
    Ok(number.parse::<f64>()? * factor)
}

/// The api-server binary, running with default settings on the benchmark's database.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(binary: &std::path::Path, database_url: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // FODI_BENCH_SERVER_LOG=FILE keeps the server's log (a line per request, with its
        // duration) for looking into a slow run; by default it is discarded.
        let log = match std::env::var_os("FODI_BENCH_SERVER_LOG") {
            Some(path) => Stdio::from(
                std::fs::File::create(&path).context("cannot create the server's log file")?,
            ),
            None => Stdio::null(),
        };
        let child = Command::new(binary)
            .env("FODI__DATABASE__URL", database_url)
            .env("FODI__SERVER__PORT", port.to_string())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the api-server")?;
        Ok(Self { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok();
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the api-server never listened");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `load` while sampling the server's resident memory; returns the load's result and
    /// the peak.
    fn under_load<T>(&self, load: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, u64)> {
        let pid = self.child.id();
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid).unwrap_or(0));
                    std::thread::sleep(Duration::from_millis(100));
                }
                peak
            })
        };
        let result = load();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().unwrap_or(0);
        Ok((result?, peak))
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}
