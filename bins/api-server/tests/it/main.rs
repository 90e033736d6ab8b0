//! The api-server over real HTTP on port 0, against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod ai;
mod analytics;
mod instances;
mod ledger;
mod live;
mod pgbouncer;
mod replica;
mod security;

use access::Scope;
use access::tokens::{ServiceToken, hash_token};
use api_server::Application;
use api_server::settings::Settings;
use db_core::DbConfig;
use db_core::testing::TestDb;
use serde_json::Value;

/// The scopes of the core backend's token in these tests: everything but money creation,
/// `metrics` and `admin`.
pub(crate) const BACKEND_SCOPES: [Scope; 6] = [
    Scope::Read,
    Scope::UsersWrite,
    Scope::AiWrite,
    Scope::LedgerWrite,
    Scope::Rewards,
    Scope::AnalyticsWrite,
];

/// A service token named `name`, holding `token`, with `scopes`.
pub(crate) fn service(name: &str, token: &str, scopes: &[Scope]) -> ServiceToken {
    ServiceToken {
        name: name.into(),
        sha256: hash_token(token),
        scopes: scopes.to_vec(),
    }
}

/// `[[auth.tokens]]` entries for a configuration file.
pub(crate) fn tokens_toml(tokens: &[ServiceToken]) -> String {
    tokens
        .iter()
        .map(|token| {
            let scopes: Vec<String> = token
                .scopes
                .iter()
                .map(|scope| format!("\"{}\"", scope.name()))
                .collect();
            format!(
                "[[auth.tokens]]\nname = \"{}\"\nsha256 = \"{}\"\nscopes = [{}]\n",
                token.name,
                token.sha256,
                scopes.join(", ")
            )
        })
        .collect()
}

/// Builds and runs the server in the background; returns its base URL and stop handle.
pub(crate) async fn spawn(
    settings: Settings,
) -> (
    String,
    api_server::StopHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let settings = Settings {
        server: api_server::settings::ServerSettings {
            host: "127.0.0.1".into(),
            port: 0,
            ..settings.server.clone()
        },
        ..settings
    };
    let application = Application::build(settings)
        .await
        .expect("the server builds");
    let base = format!("http://127.0.0.1:{}", application.port());
    let handle = application.stop_handle();
    let running = tokio::spawn(application.run_until_stopped());
    (base, handle, running)
}

/// Units as the API sends them: a string of digits (a JavaScript client would round a number
/// above 2^53). Fails the test for a JSON number.
pub(crate) fn units(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("units must travel as a string, got {value}"))
        .parse()
        .unwrap()
}

/// The field names of a JSON object, sorted: to compare a served answer with its schema.
pub(crate) fn fields(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// The field names the OpenAPI `document` gives schema `name`, sorted: its own properties and
/// those of the schemas it is composed of (`allOf`, as `#[serde(flatten)]` documents).
pub(crate) fn documented_fields(document: &Value, name: &str) -> Vec<String> {
    fn collect(document: &Value, schema: &Value, into: &mut Vec<String>) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/schemas/");
            return collect(document, &document["components"]["schemas"][name], into);
        }
        if let Some(properties) = schema["properties"].as_object() {
            into.extend(properties.keys().cloned());
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            collect(document, part, into);
        }
    }
    let mut names = Vec::new();
    collect(
        document,
        &document["components"]["schemas"][name],
        &mut names,
    );
    names.sort();
    names
}

/// The JSON answer of a plain `GET` of `url`.
pub(crate) async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// What the server at `base` serves on `/metrics`.
pub(crate) async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The OpenAPI document the server at `base` serves.
pub(crate) async fn openapi_document(base: &str) -> Value {
    get_json(&format!("{base}/api-docs/openapi.json")).await
}

pub(crate) fn with_database(db: &TestDb) -> Settings {
    Settings {
        database: DbConfig::with_url(db.url()),
        ..Settings::default()
    }
}

/// The api-server binary on a free port against `db`, `extra` appended to its configuration
/// file; returns its base URL once it listens, and the child (killed when dropped).
pub(crate) async fn spawn_binary(db: &TestDb, extra: &str) -> (String, tokio::process::Child) {
    spawn_binary_logging_to(db, extra, std::process::Stdio::inherit()).await
}

/// [`spawn_binary`] with its standard output (the log) sent to `log`. A pipe must be read:
/// the server waits for its reader rather than lose lines.
pub(crate) async fn spawn_binary_logging_to(
    db: &TestDb,
    extra: &str,
    log: std::process::Stdio,
) -> (String, tokio::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fodi.toml");
    // Port 0: see `listening_port_of`.
    std::fs::write(
        &config,
        format!(
            "[server]\nport = 0\n[database]\nurl = \"{}\"\n{extra}",
            db.url()
        ),
    )
    .unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
        .arg("--config")
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("FODI__DATABASE__URL")
        .stdout(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port = listening_port_of(&mut server).await;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (base, server)
}

/// The port a binary started on port 0 listens on, once it does (within 2 minutes: an
/// embedded cluster is created first); fails at once if the binary exits. Read from the
/// process itself: a port picked beforehand and handed over could be taken meanwhile by
/// another test's server, which would then answer in its place.
pub(crate) async fn listening_port_of(server: &mut tokio::process::Child) -> u16 {
    let pid = server.id().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(port) = listening_port(pid) {
            return port;
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!("the server exited before listening: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The TCP port process `pid` listens on, from `/proc`: its socket inodes matched against
/// the listening sockets of `/proc/<pid>/net/tcp`.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
        let listening = *state == "0A" && inodes.iter().any(|own| own == inode);
        listening
            .then(|| u16::from_str_radix(local.rsplit(':').next()?, 16).ok())
            .flatten()
    })
}

/// Sends SIGTERM to a binary from [`spawn_binary`] and waits for it to exit.
pub(crate) async fn terminate(server: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(server.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), server.wait())
        .await
        .expect("the server exits within a minute of SIGTERM")
        .unwrap()
}

/// `api-server health`, the container's health check: exit 0 while the server answers, 1
/// (saying why) once it is gone.
#[tokio::test]
async fn the_health_command_succeeds_while_the_server_answers() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, mut server) = spawn_binary(&db, "").await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fodi.toml");
    // The configured port, on a wildcard host: probed on 127.0.0.1.
    std::fs::write(
        &config,
        format!("[server]\nhost = \"0.0.0.0\"\nport = {port}\n"),
    )
    .unwrap();
    let health = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
            .args(args)
            .env_remove("FODI__SERVER__PORT")
            .output()
            .await
            .unwrap()
    };
    let by_config = health(vec![
        "--config".into(),
        config.display().to_string(),
        "health".into(),
    ])
    .await;
    assert!(
        by_config.status.success(),
        "{}",
        String::from_utf8_lossy(&by_config.stderr)
    );
    let by_url = health(vec![
        "health".into(),
        "--url".into(),
        format!("{base}/health"),
    ])
    .await;
    assert!(
        by_url.status.success(),
        "{}",
        String::from_utf8_lossy(&by_url.stderr)
    );
    let not_found = health(vec![
        "health".into(),
        "--url".into(),
        format!("{base}/nothing-here"),
    ])
    .await;
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("answered 404"));

    assert!(terminate(&mut server).await.success());
    let gone = health(vec![
        "--config".into(),
        config.display().to_string(),
        "health".into(),
    ])
    .await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("Connection refused"));
}

#[tokio::test]
async fn health_and_ready_answer_on_a_migrated_database() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;

    let document = openapi_document(&base).await;
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(fields(&health), documented_fields(&document, "Health"));

    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["migrations"], "current");
    assert_eq!(fields(&ready), documented_fields(&document, "Ready"));
    let (_, job) = ready["jobs"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(fields(job), documented_fields(&document, "JobRuns"));
    assert!(
        job.get("last_result").is_none(),
        "an error's text is no one's business here"
    );

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn ready_is_a_503_problem_while_migrations_are_pending() {
    let db = TestDb::empty().await;
    // A configured server is not migrated at start-up unless asked: that is the migrator's job.
    let (base, handle, running) = spawn(with_database(&db)).await;

    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let problem: Value = ready.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/not-ready");
    assert!(
        problem["detail"].as_str().unwrap().contains("core"),
        "{problem}"
    );

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "alive, though not ready");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_a_database_url_it_starts_migrates_and_stops_the_embedded_cluster() {
    let workdir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database: DbConfig {
            local_dir: workdir.path().join(".data/pg"),
            ..DbConfig::default()
        },
        ..Settings::default()
    };
    let (base, handle, running) = spawn(settings).await;

    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "the embedded database was migrated at start-up"
    );

    let data_dir = workdir.path().join(".data/pg/data");
    assert!(data_dir.join("postmaster.pid").exists());
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "the cluster it started is stopped on shutdown"
    );
}

#[tokio::test]
async fn a_deployment_that_leaves_out_core_is_ready_without_it() {
    // The core backend owns `public` in such deployments; only the listed sets are checked.
    let db = TestDb::new(vec![::analytics::migration_set()]).await;
    let mut settings = with_database(&db);
    settings.migrations.sets = vec!["analytics".into()];
    let (base, handle, running) = spawn(settings).await;
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[test]
fn the_example_configuration_documents_the_defaults() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/fodi.example.toml"
    );
    let documented: Settings = app_config::load(Some(std::path::Path::new(example))).unwrap();
    let as_json = |settings: &Settings| serde_json::to_value(settings).unwrap();
    assert_eq!(as_json(&documented), as_json(&Settings::default()));

    // And lists every setting that has a value by default (a missing key would still load,
    // at its default): the keys of the defaults against the example's own, section by
    // section, nested sections ([ai.cache]) included.
    fn listed(defaults: &Value, file: &toml::Value, path: &str) {
        for (key, value) in defaults.as_object().unwrap() {
            let here = format!("{path}.{key}");
            match (value, file.get(key)) {
                (Value::Object(_), Some(section)) => listed(value, section, &here),
                (Value::Null, _) | (_, Some(_)) => {}
                (_, None) => panic!("{here} is not in the example"),
            }
        }
    }
    let file: toml::Value = toml::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    listed(&as_json(&Settings::default()), &file, "");
}

#[tokio::test]
async fn the_binary_stops_gracefully_on_ctrl_c_and_stops_its_cluster() {
    use tokio::io::AsyncReadExt;
    let workdir = tempfile::tempdir().unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
        .current_dir(workdir.path())
        .env_remove("DATABASE_URL")
        .env_remove("FODI__DATABASE__URL")
        .env("FODI__SERVER__PORT", "0")
        .env_remove("FODI_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = server.stdout.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = tokio::spawn({
        let log = log.clone();
        async move {
            let mut chunk = [0; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut chunk).await {
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..read]));
            }
        }
    });
    let port = listening_port_of(&mut server).await;
    let ready_url = format!("http://127.0.0.1:{port}/ready");
    let mut ready = false;
    for _ in 0..240 {
        if reqwest::get(&ready_url)
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ready, "the api-server became ready on its embedded cluster");

    // A request's log line reaches standard output while the server runs (lines are
    // buffered, and written at least every 100 ms).
    let request_id = format!("log-check-{}", uuid::Uuid::new_v4());
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .header("X-Request-Id", &request_id)
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !log.lock().unwrap().contains(&request_id) {
        assert!(
            std::time::Instant::now() < deadline,
            "the request's log line was not written within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let pid = nix::unistd::Pid::from_raw(server.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !workdir.path().join(".data/pg/data/postmaster.pid").exists(),
        "the cluster was stopped"
    );
    // The last lines are written on the way out, without colour codes in a pipe.
    reader.await.unwrap();
    let log = log.lock().unwrap();
    assert!(log.contains("api-server stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}
