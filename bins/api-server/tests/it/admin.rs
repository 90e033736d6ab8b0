//! Tokens, the admin routes over a real supervised backend (the seed's backend routes
//! included), `/metrics`, the background jobs in `/ready`, and a shutdown that stops the
//! backend.

use std::time::{Duration, Instant};

use access::AuthConfig;
use api_server::settings::{OrchestratorSettings, Settings};
use db_core::testing::TestDb;
use serde_json::Value;

use crate::live::next_frame;
use access::Scope;
use access::tokens::hash_token;

use crate::{
    BACKEND_SCOPES, documented_fields, fields, get_json, metrics_text, openapi_document, service,
    spawn, spawn_binary_logging_to, terminate, tokens_toml, with_database,
};

const ADMIN: &str = "admin-token-0123456789";
const API: &str = "api-token-0123456789ab";

use test_support::{child_script, free_port};

fn backend(port: u16) -> OrchestratorSettings {
    OrchestratorSettings {
        enabled: true,
        binary: Some("/usr/bin/python3".into()),
        args: vec![child_script(), "--port".into(), port.to_string()],
        url: format!("http://127.0.0.1:{port}"),
        health_path: "/health".into(),
        ..OrchestratorSettings::default()
    }
}

fn secured(db: &TestDb) -> Settings {
    Settings {
        auth: AuthConfig {
            tokens: vec![
                service("ops", ADMIN, &Scope::ALL),
                service("go-backend", API, &BACKEND_SCOPES),
            ],
            read_requires_token: false,
            ..AuthConfig::default()
        },
        ..with_database(db)
    }
}

async fn call(method: &str, url: &str, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "every error is a problem document"
        );
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn backend_state(base: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = call(
            "GET",
            &format!("{base}/api/v1/admin/backend/status"),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["state"] == wanted {
            return body;
        }
        assert!(Instant::now() < deadline, "backend is {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

#[tokio::test]
async fn the_admin_routes_control_a_real_backend_behind_the_admin_token() {
    let db = TestDb::new(api_server::all_sets()).await;
    let port = free_port();
    let settings = Settings {
        orchestrator: backend(port),
        ..secured(&db)
    };
    let (base, handle, running) = spawn(settings).await;
    let processes = format!("{base}/api/v1/admin/processes");

    // Refusals: no token, a wrong one, an API token on an admin route.
    let (status, body) = call("GET", &processes, None).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (401, Some("/problems/missing-token"))
    );
    let (status, _) = call("GET", &processes, Some("wrong-token-0123456789")).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        "POST",
        &format!("{base}/api/v1/admin/backend/stop"),
        Some(API),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("/problems/forbidden"))
    );

    let running_backend = backend_state(&base, "running").await;
    let first_pid = running_backend["pid"].as_u64().unwrap();
    // State changes reach the live stream.
    let (mut live, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws?topics=processes&processes=backend",
        base.replace("http://", "ws://")
    ))
    .await
    .unwrap();
    let (status, list) = call("GET", &processes, Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "backend");

    let (status, restarted) = call(
        "POST",
        &format!("{base}/api/v1/admin/backend/restart"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{restarted}");
    assert_ne!(restarted["pid"].as_u64(), Some(first_pid));
    assert!(!alive(first_pid));
    let event = next_frame(&mut live, |frame| frame["type"] == "process").await;
    assert_eq!(event["event"]["process"], "backend", "{event}");
    assert_eq!(event["event"]["from"]["state"], "running", "{event}");
    assert_eq!(
        event["event"]["from"]["pid"].as_u64(),
        Some(first_pid),
        "{event}"
    );
    let second = backend_state(&base, "running").await["pid"]
        .as_u64()
        .unwrap();

    let (status, stopped) = call(
        "POST",
        &format!("{base}/api/v1/admin/backend/stop"),
        Some(ADMIN),
    )
    .await;
    assert_eq!((status, stopped["state"].as_str()), (200, Some("stopped")));
    assert!(!alive(second));
    // The document lists every field a process view may have; each state shows some of them.
    let document = openapi_document(&base).await;
    let documented = documented_fields(&document, "ProcessView");
    for view in [&running_backend, &restarted, &stopped, &list[0]] {
        let served = fields(view);
        assert!(
            served.iter().all(|field| documented.contains(field)),
            "{served:?} not all in {documented:?}"
        );
        for required in ["name", "state", "restarts"] {
            assert!(served.iter().any(|field| field == required), "{view}");
        }
    }
    let (status, started) = call(
        "POST",
        &format!("{base}/api/v1/admin/processes/backend/start"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let third = backend_state(&base, "running").await["pid"]
        .as_u64()
        .unwrap();
    let (status, one) = call("GET", &format!("{processes}/backend"), Some(ADMIN)).await;
    assert_eq!((status, one["pid"].as_u64()), (200, Some(third)), "{one}");
    let (status, _) = call("GET", &format!("{processes}/nobody"), Some(ADMIN)).await;
    assert_eq!(status, 404);
    let (status, logs) = call(
        "GET",
        &format!("{processes}/backend/logs?lines=5"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|line| line["line"] == "child started")
    );
    for line in logs.as_array().unwrap() {
        assert_eq!(fields(line), documented_fields(&document, "LogLineView"));
    }
    let (status, _) = call(
        "POST",
        &format!("{base}/api/v1/admin/backend/explode"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 404);

    // Metrics, in Prometheus text format. The recorder is the test process's, shared with the
    // other tests' servers: names and help texts are checked, not values.
    let metrics = metrics_text(&base).await;
    assert!(
        metrics.contains("orchestrator_up{process=\"backend\"}")
            && metrics.contains("# HELP orchestrator_up "),
        "{metrics}"
    );
    assert!(
        metrics.contains("fodi_job_alive{job_name=\"ledger_sealer\"}"),
        "{metrics}"
    );

    // A graceful stop takes the backend down with the server.
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    assert!(!alive(third), "the backend outlived the api-server");
}

#[tokio::test]
async fn without_a_backend_the_seed_routes_say_so() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let (status, body) = call(
        "GET",
        &format!("{base}/api/v1/admin/backend/status"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("/problems/backend-not-supervised"))
    );
    let (status, body) = call(
        "GET",
        &format!("{base}/api/v1/admin/processes"),
        Some(ADMIN),
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!([])));
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn ready_reports_every_background_job() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.jobs.ledger_sealer = Duration::from_millis(50);
    settings.jobs.history_settler = Duration::from_millis(50);
    let (base, handle, running) = spawn(settings).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        let ready = get_json(&format!("{base}/ready")).await;
        let ran = |job: &str| ready["jobs"][job]["runs"].as_u64().unwrap_or(0) > 0;
        if ran("ledger_sealer") && ran("history_settler") {
            break ready["jobs"].clone();
        }
        assert!(Instant::now() < deadline, "{ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for job in [
        "ai_maintenance",
        "ledger_sealer",
        "hold_expiry",
        "history_settler",
        "daily_stats_refresh",
        "partition_maintenance",
    ] {
        assert_eq!(jobs[job]["alive"], true, "{job}: {jobs}");
    }
    assert_eq!(jobs["ledger_sealer"]["last_ok"], true, "{jobs}");
    assert_eq!(jobs["history_settler"]["last_ok"], true, "{jobs}");
    // The recorder is shared with the other tests' servers: the series are checked, not values.
    let metrics = metrics_text(&base).await;
    for series in [
        "fodi_job_last_run_ok{job_name=\"ledger_sealer\"}",
        "fodi_job_last_run_timestamp_seconds{job_name=\"ledger_sealer\"}",
    ] {
        assert!(metrics.contains(series), "{series}: {metrics}");
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[test]
fn settings_refuse_an_open_public_bind_and_redact_secrets() {
    let mut settings = Settings::default();
    settings.server.host = "0.0.0.0".into();
    let refused = settings.check().unwrap_err().to_string();
    assert!(refused.contains("without credentials"), "{refused}");
    settings.auth.tokens = vec![service("ops", ADMIN, &Scope::ALL)];
    settings.check().unwrap();
    settings
        .auth
        .tokens
        .push(service("ops", API, &BACKEND_SCOPES));
    let refused = settings.check().unwrap_err().to_string();
    assert!(refused.contains("unique"), "{refused}");
    settings.auth.tokens.pop();
    for (name, token) in [("user:someone", API), ("anonymous", API), ("twin", ADMIN)] {
        settings
            .auth
            .tokens
            .push(service(name, token, &BACKEND_SCOPES));
        let refused = settings.check().unwrap_err().to_string();
        assert!(refused.contains(name), "{name}: {refused}");
        settings.auth.tokens.pop();
    }
    settings.auth.jwt = Some(access::jwt::JwtConfig {
        issuer: "core".into(),
        audience: "api".into(),
        algorithm: "HS256".into(),
        hs256_secret: Some("a-shared-secret-of-at-least-32-bytes".into()),
        public_key_file: None,
        leeway: Duration::from_secs(5),
    });

    settings.auth.read_requires_token = false;
    let refused = settings.check().unwrap_err().to_string();
    assert!(refused.contains("read_requires_token"), "{refused}");
    settings.auth.read_requires_token = true;
    settings.check().unwrap();

    settings.database.url = Some("postgres://fodi:secret@db.internal/fodi".into());
    let shown = toml::to_string(&settings.redacted()).unwrap();
    assert!(
        !shown.contains(ADMIN)
            && !shown.contains("fodi:secret")
            && !shown.contains("shared-secret"),
        "{shown}"
    );
    assert!(
        shown.contains(&hash_token(ADMIN)),
        "the hash is no secret: {shown}"
    );
    assert!(shown.contains("***"));

    let debugged = format!("{settings:?}");
    assert!(!debugged.contains(ADMIN), "{debugged}");

    let mut timed = Settings::default();
    timed.jobs.ledger_sealer = Duration::ZERO;
    let refused = timed.check().unwrap_err().to_string();
    assert!(refused.contains("jobs.ledger_sealer"), "{refused}");
    let mut forgetful = Settings::default();
    forgetful.ai.retention.messages = Some(Duration::ZERO);
    let refused = forgetful.check().unwrap_err().to_string();
    assert!(refused.contains("ai.retention.messages"), "{refused}");
    let mut empty = Settings::default();
    empty.analytics.partitions.retention_days = 0;
    let refused = empty.check().unwrap_err().to_string();
    assert!(
        refused.contains("analytics.partitions.retention_days"),
        "{refused}"
    );
    let mut unconnected = Settings::default();
    unconnected.ledger.engine_connections = 0;
    let refused = unconnected.check().unwrap_err().to_string();
    assert!(refused.contains("ledger.engine_connections"), "{refused}");
    let mut idle = Settings::default();
    idle.server.workers = Some(0);
    let refused = idle.check().unwrap_err().to_string();
    assert!(refused.contains("server.workers"), "{refused}");

    let mut seeded = Settings::default();
    seeded
        .apply_seed_environment(|name| match name {
            "ORCHESTRATOR_ENABLED" => Some("True".into()),
            "GO_BACKEND_BINARY" => Some("/opt/backend".into()),
            "GO_BACKEND_URL" => Some("http://127.0.0.1:9000".into()),
            _ => None,
        })
        .unwrap();
    assert!(seeded.orchestrator.enabled);
    assert_eq!(seeded.orchestrator.url, "http://127.0.0.1:9000");
    assert_eq!(
        seeded
            .orchestrator
            .binary
            .as_deref()
            .and_then(std::path::Path::to_str),
        Some("/opt/backend")
    );
    let switched_off = |value: &str| {
        let mut settings = seeded.clone();
        settings
            .apply_seed_environment(|name| (name == "ORCHESTRATOR_ENABLED").then(|| value.into()))
            .map(|()| !settings.orchestrator.enabled)
    };
    assert!(switched_off("OFF").unwrap() && switched_off("0").unwrap());
    let refused = switched_off("enabled").unwrap_err().to_string();
    assert!(refused.contains("ORCHESTRATOR_ENABLED"), "{refused}");
}

#[test]
fn print_config_shows_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fodi.toml");
    std::fs::write(
        &path,
        format!(
            "{}[server]\nport = 9999\n",
            tokens_toml(&[service("ops", ADMIN, &Scope::ALL)])
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .env("GO_BACKEND_URL", "http://127.0.0.1:7777")
        // Lists come from the environment comma-separated.
        .env(
            "FODI__SERVER__CORS_ORIGINS",
            "https://a.example,https://b.example",
        )
        .env(
            "FODI__DATABASE__URL",
            "postgres://fodi@db.internal/fodi?password=hunter2",
        )
        .env(
            "FODI__DATABASE__SESSION_URL",
            "postgres://fodi:hunter3@db.internal/fodi",
        )
        .env("FODI__ORCHESTRATOR__ENV__BACKEND_DB_PASSWORD", "swordfish")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(shown.contains("port = 9999"), "{shown}");
    assert!(
        shown.contains("http://127.0.0.1:7777"),
        "the seed's variable is honoured"
    );
    assert!(!shown.contains(ADMIN), "{shown}");
    let effective: toml::Value = toml::from_str(&shown).unwrap();
    assert_eq!(
        effective["auth"]["tokens"][0]["name"].as_str(),
        Some("ops"),
        "{shown}"
    );
    assert_eq!(
        effective["server"]["cors_origins"],
        toml::Value::try_from(["https://a.example", "https://b.example"]).unwrap()
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("hunter3"), "database.session_url: {shown}");
    assert!(
        !shown.contains("swordfish"),
        "the backend's environment: {shown}"
    );
    assert!(
        shown.to_lowercase().contains("backend_db_password"),
        "its names are shown: {shown}"
    );
    // Four pools of 16 and the read-only one of 2, the ledger engine's 16, the AI cache's 8,
    // the recorder's 1.
    assert!(
        shown.contains("# PostgreSQL connections this instance may open at most: 91"),
        "{shown}"
    );
}

/// `[pools]`: each part's pool opens at most its own size, and `--print-config` counts it.
#[tokio::test]
async fn each_parts_pool_size_is_a_setting_and_counted_in_the_budget() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.pools.core = Some(3);
    settings.pools.analytics = Some(2);
    let application = api_server::Application::build(settings).await.unwrap();
    let pools = application.pools().clone();
    let handle = application.stop_handle();
    let running = tokio::spawn(application.run_until_stopped());
    let sizes: Vec<usize> = [&pools.core, &pools.ai, &pools.ledger, &pools.analytics]
        .iter()
        .map(|pool| pool.usage().max)
        .collect();
    assert_eq!(sizes, vec![3, 16, 16, 2]);
    // Ten concurrent statements on the core pool: never more than three connections.
    let busy: Vec<_> = (0..10)
        .map(|_| {
            let pool = pools.core.primary().clone();
            tokio::spawn(async move {
                db_core::sqlx::query("SELECT pg_sleep(0.05)")
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        })
        .collect();
    let mut most = 0;
    while busy.iter().any(|task| !task.is_finished()) {
        most = most.max(pools.core.usage().in_use + pools.core.usage().idle);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!((1..=3).contains(&most), "{most} connections open");
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
        .arg("--print-config")
        .env("FODI__POOLS__CORE", "3")
        .env("FODI__POOLS__ANALYTICS", "2")
        .env_remove("FODI__DATABASE__URL")
        .output()
        .unwrap();
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(shown.contains("pool core (pools.core)"), "{shown}");
    assert!(
        shown.contains("pool ai (database.max_connections)"),
        "{shown}"
    );
    // 91 by default, less 13 and 14.
    assert!(
        shown.contains("# PostgreSQL connections this instance may open at most: 64"),
        "{shown}"
    );
}

/// POSTs answered 503 so far, by `fodi_http_request_duration_seconds` (shared by the test
/// process's servers; no other test's POST times out).
async fn timed_out_posts(base: &str) -> f64 {
    metrics_text(base)
        .await
        .lines()
        .filter(|line| line.starts_with("fodi_http_request_duration_seconds_count{"))
        .filter(|line| line.contains("method=\"POST\"") && line.contains("status=\"503\""))
        // The route survives the abandoned call.
        .filter(|line| line.contains("route=\"/api/v1/users\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_request_past_the_timeout_is_answered_503_with_its_id_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.server.request_timeout = Duration::from_millis(300);
    let (base, handle, running) = spawn(settings).await;
    let timed_out_before = timed_out_posts(&base).await;
    // A body announced and never sent: the handler waits for it past the timeout.
    let address = base.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\nX-Request-Id: stalled-upload-7\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    let head_and_body = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let read = stalled.read(&mut chunk).await.unwrap();
            answer.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            if read == 0 || text.contains("\"timeout\"") || text.contains("/timeout") {
                return text;
            }
        }
    })
    .await
    .expect("an answer within the timeout");
    let lowercase = head_and_body.to_ascii_lowercase();
    assert!(head_and_body.starts_with("HTTP/1.1 503"), "{head_and_body}");
    assert!(
        lowercase.contains("x-request-id: stalled-upload-7"),
        "{head_and_body}"
    );
    assert!(
        lowercase.contains("application/problem+json"),
        "{head_and_body}"
    );

    let timed_out = timed_out_posts(&base).await;
    assert!(timed_out > timed_out_before, "counted: {timed_out}");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn where_the_core_backend_owns_public_the_users_routes_are_not_served() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.migrations.sets = vec!["ai".into(), "blockchain".into(), "analytics".into()];
    let (base, handle, running) = spawn(settings).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/v1/users"))
        .json(&serde_json::json!({ "email": "nobody@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 404);
    let problem: Value = created.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/no-such-route");
    let blocks = client
        .get(format!("{base}/api/v1/ledger/blocks"))
        .send()
        .await
        .unwrap();
    assert_eq!(blocks.status(), 200, "the other families are served");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn requests_carry_an_id_and_cors_answers_configured_origins() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.server.cors_origins = vec!["https://app.example.com".into()];
    let (base, handle, running) = spawn(settings).await;
    let client = reqwest::Client::new();
    let echoed = client
        .get(format!("{base}/health"))
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let generated = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36, "a UUID");

    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{base}/api/v1/users"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let stranger = client
        .get(format!("{base}/health"))
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin")
    );
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_openapi_document_and_the_offline_docs_are_served() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let document = openapi_document(&base).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/health",
        "/api/v1/users",
        "/api/v1/ledger/transfers",
        "/api/v1/ai/users/{user}/cache/{key}",
        "/api/v1/analytics/metrics/{name}/buckets",
        "/api/v1/admin/processes/{name}/restart",
        "/api/v1/admin/backend/{action}",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert!(document["components"]["schemas"]["NewTransfer"]["properties"]["amount"].is_object());

    let page = reqwest::get(format!("{base}/docs")).await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    // The page runs only this server's scripts (none inline) and no other site may frame it.
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/docs/swagger-ui-bundle.js") && !html.contains("https://"),
        "offline: {html}"
    );
    assert!(!html.contains("<script>"), "no inline script: {html}");
    for (asset, kind, size) in [
        ("swagger-ui-bundle.js", "application/javascript", 100_000),
        ("swagger-ui.css", "text/css", 100_000),
        ("swagger-init.js", "application/javascript", 100),
    ] {
        let response = reqwest::get(format!("{base}/docs/{asset}")).await.unwrap();
        assert_eq!(
            (
                response.status().as_u16(),
                response.headers()["content-type"].to_str().unwrap(),
                response.headers()["cache-control"].to_str().unwrap(),
            ),
            (200, kind, "public, max-age=86400")
        );
        let body = response.bytes().await.unwrap();
        assert!(body.len() > size);
        if asset == "swagger-init.js" {
            // Swagger UI's default would send the document to validator.swagger.io.
            assert!(String::from_utf8_lossy(&body).contains("validatorUrl: null"));
        }
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn only_the_lock_holder_supervises_and_another_takes_over_when_it_stops() {
    let db = TestDb::new(api_server::all_sets()).await;
    let port = free_port();
    let settings = Settings {
        orchestrator: backend(port),
        ..secured(&db)
    };
    let (first, first_handle, first_running) = spawn(settings.clone()).await;
    let leader_pid = backend_state(&first, "running").await["pid"]
        .as_u64()
        .unwrap();
    let (second, second_handle, second_running) = spawn(settings).await;
    tokio::time::sleep(api_server::leader::RETRY * 2).await;
    let (status, follower) = call(
        "GET",
        &format!("{second}/api/v1/admin/backend/status"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (status, follower["state"].as_str()),
        (200, Some("stopped")),
        "one copy only"
    );
    let (status, refused) = call(
        "POST",
        &format!("{second}/api/v1/admin/backend/start"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (409, Some("/problems/not-leader"))
    );

    // The leader goes away: its backend stops, and the other instance takes over.
    first_handle.stop(true).await;
    first_running.await.unwrap().unwrap();
    assert!(!alive(leader_pid));
    let started = Instant::now();
    let taken_over = backend_state(&second, "running").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_ne!(taken_over["pid"].as_u64(), Some(leader_pid));
    second_handle.stop(true).await;
    second_running.await.unwrap().unwrap();
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_never_a_token() {
    use tokio::io::AsyncReadExt;

    let db = TestDb::new(api_server::all_sets()).await;
    let config = format!(
        "[log]\njson = true\n{}",
        tokens_toml(&[
            service("ops", ADMIN, &Scope::ALL),
            service("go-backend", API, &BACKEND_SCOPES)
        ])
    );
    let (base, mut server) =
        spawn_binary_logging_to(&db, &config, std::process::Stdio::piped()).await;
    let mut stdout = server.stdout.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        stdout.read_to_string(&mut log).await.unwrap();
        log
    });
    let wrong = "not-a-configured-token-0123";
    let client = reqwest::Client::new();
    for (token, expected) in [(API, 201), (wrong, 401)] {
        let created = client
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(token)
            .header("X-Request-Id", format!("logged-{expected}"))
            .json(&serde_json::json!({ "email": format!("log-{expected}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), expected);
    }
    let (status, _) = call(
        "GET",
        &format!("{base}/api/v1/admin/processes"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200);
    // The database goes away under the server: the handler's failure is logged with its
    // cause, inside the request's span.
    let database = db.name().to_owned();
    let mut cluster = {
        use db_core::sqlx::Connection;
        let options = db.connect_options().database("postgres");
        db_core::sqlx::PgConnection::connect_with(&options)
            .await
            .unwrap()
    };
    db_core::sqlx::query(db_core::sqlx::AssertSqlSafe(format!(
        r#"ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false"#
    )))
    .execute(&mut cluster)
    .await
    .unwrap();
    db_core::sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&database)
    .execute(&mut cluster)
    .await
    .unwrap();
    let failed = client
        .get(format!("{base}/api/v1/users/{}", uuid::Uuid::new_v4()))
        .bearer_auth(API)
        .header("X-Request-Id", "logged-failure")
        .send()
        .await
        .unwrap();
    assert!(failed.status().is_server_error(), "{}", failed.status());
    db_core::sqlx::query(db_core::sqlx::AssertSqlSafe(format!(
        r#"ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true"#
    )))
    .execute(&mut cluster)
    .await
    .unwrap();
    assert!(terminate(&mut server).await.success());

    let log = log.await.unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    // The request's span carries its id on the request's own line and on what the handler
    // logged: the cause of the failure, at warning or error level.
    let in_request = |line: &&Value, id: &str| line["span"]["request_id"] == id;
    for id in ["logged-201", "logged-401", "logged-failure"] {
        assert!(
            lines
                .iter()
                .any(|line| in_request(&line, id) && line["fields"]["message"] == "request"),
            "{id} in {log}"
        );
    }
    // And the caller's name, never its token.
    assert!(
        lines.iter().any(|line| in_request(&line, "logged-201")
            && line["fields"]["message"] == "request"
            && line["span"]["caller"] == "go-backend"),
        "no caller on the request's line: {log}"
    );
    let cause = lines
        .iter()
        .find(|line| in_request(line, "logged-failure") && line["fields"]["message"] != "request")
        .unwrap_or_else(|| panic!("no cause logged in the request's span: {log}"));
    assert!(
        ["WARN", "ERROR"].contains(&cause["level"].as_str().unwrap()),
        "{cause}"
    );
    for token in [ADMIN, API, wrong] {
        assert!(!log.contains(token), "a token reached the log: {log}");
    }
}

/// The patterns the document gives amounts and e-mail addresses say exactly what the crates
/// accept: checked on the served document against `Amount::parse_decimal` and `Email::parse`
/// over edge cases and many generated strings.
#[tokio::test]
async fn the_documented_patterns_are_the_crates_rules() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(crate::with_database(&db)).await;
    let document = openapi_document(&base).await;
    let schemas = &document["components"]["schemas"];
    let pattern = |value: &Value| regex::Regex::new(value.as_str().unwrap()).unwrap();
    let amount = pattern(&schemas["TokenAmount"]["pattern"]);
    let email = pattern(&schemas["NewUser"]["properties"]["email"]["pattern"]);
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    let mut amounts: Vec<String> = [
        "0",
        "00",
        "0.0",
        ".5",
        "0.5",
        "1.",
        "1.0000000001",
        "0.000000001",
        "-1",
        "+1",
        "1e3",
        " 1",
        "9223372036.854775807",
        "9223372036.854775808",
        "09223372036.8547758",
        "9223372036.85477580",
        "9223372037",
        "99999999999",
        "",
    ]
    .map(String::from)
    .to_vec();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for _ in 0..20_000 {
        let digits = |count: u64, next: &mut dyn FnMut(u64) -> u64| -> String {
            (0..count)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect()
        };
        let whole = digits(next(12), &mut next);
        let fraction = digits(next(11), &mut next);
        amounts.push(if next(4) == 0 {
            whole
        } else {
            format!("{whole}.{fraction}")
        });
    }
    for text in &amounts {
        assert_eq!(
            amount.is_match(text),
            ledger::Amount::parse_decimal(text).is_ok(),
            "amount {text:?}"
        );
    }

    let long = format!("{}@b", "a".repeat(318));
    let longer = format!("{}@b", "a".repeat(319));
    for text in [
        "a@b",
        "ünï@b.example",
        "a@b@c",
        "@b",
        "a@",
        "a b@c",
        " a@b",
        "a@b ",
        "a@b\u{85}",
        "a@\u{a0}b",
        "a@\u{3000}b",
        "a\u{feff}@b",
        "a\u{1}@b",
        "a\u{7f}@b",
        &long,
        &longer,
    ] {
        let documented = email.is_match(text) && text.chars().count() <= 320;
        assert_eq!(
            documented,
            core_store::Email::parse(text).is_ok(),
            "email {text:?}"
        );
    }
    db.close().await;
}

#[tokio::test]
async fn request_metrics_keep_closed_label_sets_whatever_clients_send() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let client = reqwest::Client::new();
    let mut noise = Vec::new();
    for i in 0..1_000 {
        let word = uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase();
        let method = if i % 2 == 0 {
            reqwest::Method::from_bytes(format!("Q{word}").as_bytes()).unwrap()
        } else {
            reqwest::Method::GET
        };
        let path = match i % 3 {
            0 => format!("/{word}/{i}"),
            1 => format!("/api/v1/ledger/wallets/{word}"),
            _ => format!("/api/v1/users/{word}/wallets"),
        };
        client
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        noise.push(word);
    }
    let metrics = metrics_text(&base).await;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("fodi_http_request_duration_seconds"))
        .collect();
    assert!(!series.is_empty(), "{metrics}");
    // A real histogram: buckets, so that percentiles add up across a fleet.
    assert!(
        metrics.contains("# TYPE fodi_http_request_duration_seconds histogram")
            && series
                .iter()
                .any(|line| line.starts_with("fodi_http_request_duration_seconds_bucket{")),
        "{metrics}"
    );
    for word in &noise {
        assert!(!metrics.contains(word.as_str()), "{word} became a label");
    }
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_owned())
    };
    for line in &series {
        let method = label(line, "method").unwrap();
        assert!(
            [
                "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"
            ]
            .contains(&method.as_str()),
            "{line}"
        );
        let route = label(line, "route").unwrap();
        assert!(route == "unmatched" || route.starts_with('/'), "{line}");
    }
    for route in ["/api/v1/ledger/wallets/{id}", "unmatched"] {
        assert!(
            series
                .iter()
                .any(|line| line.contains(&format!("route=\"{route}\""))),
            "{route}: {series:#?}"
        );
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn answers_carry_security_headers_and_an_open_server_serves_only_localhost() {
    let db = TestDb::new(api_server::all_sets()).await;
    let client = reqwest::Client::new();

    let (open, handle, running) = spawn(with_database(&db)).await;
    let users = format!("{open}/api/v1/users/{}", uuid::Uuid::now_v7());
    let local = client.get(&users).send().await.unwrap();
    assert_eq!(local.status(), 404, "an unknown user, answered");
    assert_eq!(local.headers()["x-content-type-options"], "nosniff");
    assert_eq!(local.headers()["cache-control"], "no-store");
    // A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its own
    // name as the Host: an open server must not answer it.
    for path in ["/health", "/api/v1/users"] {
        let rebound = client
            .get(format!("{open}{path}"))
            .header("host", "rebind.example:8080")
            .send()
            .await
            .unwrap();
        assert_eq!(rebound.status(), 403, "{path}");
        assert_eq!(
            rebound.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = rebound.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/host-not-allowed", "{problem}");
    }
    let named = client
        .get(format!("{open}/health"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 200);
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    // With tokens, the server may sit behind any name.
    let (secured_base, handle, running) = spawn(secured(&db)).await;
    let behind_a_name = client
        .get(format!("{secured_base}/health"))
        .header("host", "api.fodi.example")
        .send()
        .await
        .unwrap();
    assert_eq!(behind_a_name.status(), 200);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_managed_postgres_url_with_tls_serves_reads_and_writes() {
    // What a managed PostgreSQL (TLS only) looks like: a server with `ssl = on` reached with
    // `sslmode=verify-full` and the CA that issued its certificate.
    let server = db_core::testing::tls::TlsCluster::start(true).await;
    let ca = server.ca_file().display().to_string();
    let mut settings = Settings {
        database: db_core::DbConfig::with_url(server.url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        )),
        ..Settings::default()
    };
    settings.migrations.apply_on_start = Some(true);
    let (base, handle, running) = spawn(settings).await;

    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/v1/users"))
        .json(&serde_json::json!({ "email": "tls@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    // Every connection the server holds is encrypted.
    let mut admin = db_core::connect(&server.url("127.0.0.1", "sslmode=require").parse().unwrap())
        .await
        .unwrap();
    let (connections, encrypted): (i64, i64) = db_core::sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(connections > 0);
    assert_eq!(encrypted, connections);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_server_speaks_https_with_its_certificate_and_tls_1_2_or_later() {
    let db = TestDb::new(api_server::all_sets()).await;
    let dir = tempfile::tempdir().unwrap();
    let issued = test_support::Certificates::issue(&["localhost"]);
    let cert_file = dir.path().join("server.crt");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &issued.certificate).unwrap();
    std::fs::write(&key_file, &issued.key).unwrap();

    let mut settings = with_database(&db);
    settings.server.tls = Some(app_config::TlsFiles {
        cert_file,
        key_file,
    });
    let (base, handle, running) = spawn(settings).await;
    let https = base.replace("http://127.0.0.1", "https://localhost");
    let trusting = |builder: reqwest::ClientBuilder| {
        builder
            .add_root_certificate(reqwest::Certificate::from_pem(issued.ca.as_bytes()).unwrap())
            .build()
            .unwrap()
    };

    let client = trusting(reqwest::Client::builder());
    let health = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let missing = client
        .get(format!("{https}/api/v1/users/{}", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    // TLS 1.2 alone is enough (older versions do not exist in rustls).
    let tls12 = trusting(
        reqwest::Client::builder()
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .max_tls_version(reqwest::tls::Version::TLS_1_2),
    );
    assert_eq!(
        tls12
            .get(format!("{https}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A client that does not trust the certificate, and plain HTTP: no answer.
    let untrusting = reqwest::Client::new();
    let refused = untrusting.get(format!("{https}/health")).send().await;
    assert!(refused.is_err(), "{refused:?}");
    let plain = reqwest::get(format!("{base}/health")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A rolling deploy: the next release migrates the database while this build still serves.
/// This build stays ready (the newer migration is "ahead", not drift); a migration of its own
/// that is missing still makes it unready.
#[tokio::test]
async fn a_running_build_stays_ready_when_the_next_release_migrates() {
    use db_core::migrate::{Migration, MigrationSet, Migrator, UpOptions};

    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let ready = || async {
        reqwest::get(format!("{base}/ready"))
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ready().await, 200);

    // The next release's analytics set: every migration of this build, and one more.
    let current = ::analytics::migration_set();
    let mut migrations = current.migrations().to_vec();
    let next = current
        .migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap()
        + 1;
    migrations.push(
        Migration::unapplied(
            &format!("V{next}__next_release"),
            "CREATE TABLE analytics.next_release (id int PRIMARY KEY)",
        )
        .unwrap(),
    );
    let next_release =
        MigrationSet::new(current.name(), current.schema(), migrations).depends_on(&["core"]);
    let mut connection = db_core::connect(&db.url().parse().unwrap()).await.unwrap();
    let report = Migrator::new(vec![next_release])
        .unwrap()
        .up(&mut connection, UpOptions::default())
        .await
        .unwrap();
    assert_eq!(report.applied_count(), 1);
    assert_eq!(
        ready().await,
        200,
        "the expanded schema still serves this build"
    );

    // A migration of this build's own gone from the history: not ready.
    db_core::sqlx::query(db_core::sqlx::AssertSqlSafe(format!(
        "DELETE FROM analytics.refinery_schema_history WHERE version = {}",
        next - 1
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    let unready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(unready.status(), 503);
    assert!(unready.text().await.unwrap().contains("analytics"));
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A background job that fails on a real database error logs what the database said and its
/// SQLSTATE, not only "database error".
#[tokio::test]
async fn a_failing_job_logs_the_database_s_words_and_code() {
    use tokio::io::AsyncReadExt;

    let db = TestDb::new(api_server::all_sets()).await;
    let config = "[log]\njson = true\n[jobs]\ndaily_stats_refresh = \"100ms\"\n";
    let (_base, mut server) =
        spawn_binary_logging_to(&db, config, std::process::Stdio::piped()).await;
    let mut stdout = server.stdout.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        stdout.read_to_string(&mut log).await.unwrap();
        log
    });
    // The refresh runs as fodi_analytics through a function it may no longer execute.
    db_core::sqlx::query(
        "REVOKE EXECUTE ON FUNCTION analytics.refresh_daily_stats() FROM fodi_analytics",
    )
    .execute(db.pool())
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(terminate(&mut server).await.success());
    let log = log.await.unwrap();
    let failure = log
        .lines()
        .find(|line| line.contains("background job failed") && line.contains("daily_stats_refresh"))
        .unwrap_or_else(|| panic!("no failure logged: {log}"));
    assert!(
        failure.contains("permission denied for function refresh_daily_stats")
            && failure.contains("SQLSTATE 42501"),
        "{failure}"
    );
}
