//! Test fixtures: a fresh, migrated database per test (feature `testing`).
//!
//! [`TestDb::new`] clones a template database that was migrated once with the given sets, so a
//! test starts from a fully migrated schema in milliseconds and sees no other test's rows.
//!
//! The server is the one named by `TEST_DATABASE_URL` when that is set (its role must be
//! allowed to create databases). Otherwise it is a shared local cluster in the system's
//! temporary directory, started by the first test that needs it and reused by every later
//! test, process and run (it works the same under `cargo test` and `cargo nextest`, which runs
//! each test in its own process). It keeps running after the tests so the next run starts at
//! once; `pg_ctl -D <tmp>/fodi-test-pg-<uid>/data stop` (or `just db-stop`) stops it.
//!
//! With `TEST_PGBOUNCER_URL` set (a URL with `{database}` standing for the database's name, of
//! a PgBouncer in transaction mode in front of that server), [`TestDb::db`] is a
//! `pooling = "transaction"` [`Db`] through it, its `session_url` the server itself: the code
//! under test then runs through the pooler, while [`TestDb::pool`] (the tests' own setup and
//! checks) stays direct. `.ci/pooled-suite` runs the crates' suites so.

pub mod pgbouncer;
pub mod replica;
pub mod tls;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

use crate::cluster::{Durability, LocalCluster, LocalClusterConfig};
use crate::db::Db;
use crate::migrate::{MigrationSet, Migrator, UpOptions};
use crate::target::{connect, quote_identifier};

/// Connections a test may open at once; enough for tests with 32 concurrent clients.
const POOL_SIZE: u32 = 48;

/// The server tests run on, shared by every test of the process.
static SERVER: OnceCell<TestServer> = OnceCell::const_new();
/// Templates known to be ready in this process, so the catalog is asked once per template.
static READY_TEMPLATES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static DATABASE_COUNTER: AtomicU64 = AtomicU64::new(0);
static STALE_DATABASES_REMOVED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
struct TestServer {
    /// Options for the maintenance database (`postgres`) as a role that may create databases.
    admin: PgConnectOptions,
    /// URL of the server with `{database}` standing for the database name.
    url_pattern: String,
    /// Whether the server is the shared local cluster (which we may tidy up).
    local: bool,
}

impl TestServer {
    async fn get() -> &'static TestServer {
        let server = SERVER.get_or_try_init(Self::init).await;
        match server {
            Ok(server) => server,
            Err(message) => panic!("no PostgreSQL for tests: {message}"),
        }
    }

    async fn init() -> Result<TestServer, String> {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            let admin: PgConnectOptions = url
                .parse::<PgConnectOptions>()
                .map_err(|error| format!("TEST_DATABASE_URL is not a valid URL: {error}"))?;
            return Ok(TestServer {
                admin,
                url_pattern: url_with_database(&url, "{database}"),
                local: false,
            });
        }
        let dir = std::env::temp_dir().join(format!("fodi-test-pg-{}", nix::unistd::getuid()));
        let mut config = LocalClusterConfig::new(dir);
        config.durability = Durability::Ephemeral;
        config.settings = vec![
            ("max_connections".into(), "500".into()),
            // Many short-lived databases: keep autovacuum from competing with the tests.
            ("autovacuum".into(), "off".into()),
        ];
        config.stop_on_drop = false;
        let mut cluster = LocalCluster::start(config)
            .await
            .map_err(|error| error_chain(&error))?;
        cluster.keep_running();
        let url_pattern = cluster.url("{database}");
        Ok(TestServer {
            admin: cluster.connect_options("postgres"),
            url_pattern,
            local: true,
        })
    }

    fn url(&self, database: &str) -> String {
        self.url_pattern.replace("{database}", database)
    }
}

/// A uniquely named database that exists for the life of one test; dropped with the value.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    pool: PgPool,
    /// Through `TEST_PGBOUNCER_URL`, when it is set.
    pooled: Option<Db>,
    server: &'static TestServer,
    dropped: bool,
}

impl TestDb {
    /// A fresh database with `sets` migrated, cloned from a template migrated once per
    /// distinct list of sets (and re-made when any migration changes).
    ///
    /// # Panics
    /// When no server is available or the migrations fail: a test cannot proceed without its
    /// database, and the message says what to fix.
    pub async fn new(sets: Vec<MigrationSet>) -> Self {
        let server = TestServer::get().await;
        let template = template_name(&sets);
        if let Err(message) = ensure_template(server, &template, sets).await {
            panic!("could not prepare the test template database {template}: {message}");
        }
        Self::create(server, Some(&template)).await
    }

    /// A fresh, empty database (no schema of ours), for tests of migrations themselves.
    pub async fn empty() -> Self {
        let server = TestServer::get().await;
        Self::create(server, None).await
    }

    async fn create(server: &'static TestServer, template: Option<&str>) -> Self {
        if server.local && !STALE_DATABASES_REMOVED.swap(true, Ordering::SeqCst) {
            remove_databases_of_dead_processes(server).await;
        }
        let name = format!(
            "fodi_test_{}_{}_{:08x}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let statement = match template {
            Some(template) => {
                format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    quote_identifier(&name),
                    quote_identifier(template)
                )
            }
            None => format!("CREATE DATABASE {}", quote_identifier(&name)),
        };
        if let Err(message) = admin_execute(server, &statement).await {
            panic!("could not create the test database {name}: {message}");
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .test_before_acquire(false)
            .connect_lazy_with(server.admin.clone().database(&name));
        let pooled = match std::env::var("TEST_PGBOUNCER_URL") {
            Ok(pattern) => Some(through_pgbouncer(&pattern, server, &name).await),
            Err(_) => None,
        };
        Self {
            name,
            pool,
            pooled,
            server,
            dropped: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool of up to 48 connections to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A new user of `public.users` (the `core` set must be among the database's sets), with
    /// an e-mail address of its own: the fixture every data crate's foreign keys need.
    pub async fn user(&self) -> crate::UserId {
        let id = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO public.users (id, email) VALUES ($1, $2)")
            .bind(id)
            .bind(format!("{id}@example.com"))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|error| panic!("cannot create a test user: {error}"));
        crate::UserId(id)
    }

    /// A [`Db`] over this database's pool; through PgBouncer with `TEST_PGBOUNCER_URL`.
    pub fn db(&self) -> Db {
        match &self.pooled {
            Some(pooled) => pooled.clone(),
            None => Db::from_pool(self.pool.clone()),
        }
    }

    /// Connection options for this database (for extra pools or single connections).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.server.admin.clone().database(&self.name)
    }

    /// A URL of this database, for child processes (`migrator --database-url`).
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    /// Closes the pool and drops the database, waiting for both.
    pub async fn close(mut self) {
        self.pool.close().await;
        if let Some(pooled) = &self.pooled {
            pooled.close().await;
        }
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&self.name)
        );
        if let Err(message) = admin_execute(self.server, &statement).await {
            tracing::warn!(database = %self.name, %message, "could not drop a test database");
        }
        self.dropped = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down: drop the database
        // from a thread with its own small runtime. FORCE ends this test's open connections.
        let server = self.server;
        let statement = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&self.name)
        );
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(admin_execute(server, &statement)),
                Err(error) => Err(error.to_string()),
            }
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                tracing::warn!(database = %name, %message, "could not drop a test database");
            }
            Err(_) => {
                tracing::warn!(database = %name, "the thread dropping a test database panicked");
            }
        }
    }
}

/// The advisory lock under which templates are built: "fodi:tpl" as a number.
const TEMPLATE_LOCK_KEY: i64 = 0x666f_6469_3a74_706c;

/// Creates and migrates the template once per cluster, under an advisory lock so concurrent
/// test processes build it once and never clone a half-migrated template. One lock for every
/// template: the migrations create cluster-wide group roles, and two templates migrating at
/// once can undo each other's (a set's first migration creates two roles in one block, and a
/// concurrent creation of the second rolls the first back with it).
async fn ensure_template(
    server: &TestServer,
    template: &str,
    sets: Vec<MigrationSet>,
) -> Result<(), String> {
    if READY_TEMPLATES
        .lock()
        .map_err(|e| e.to_string())?
        .iter()
        .any(|ready| ready == template)
    {
        return Ok(());
    }
    let mut admin = connect(&server.admin).await.map_err(|e| error_chain(&e))?;
    let lock_key = TEMPLATE_LOCK_KEY;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key)
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let result = build_template_if_missing(server, &mut admin, template, sets).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key)
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    result?;
    unlock.map_err(|e| e.to_string())?;
    READY_TEMPLATES
        .lock()
        .map_err(|e| e.to_string())?
        .push(template.to_owned());
    Ok(())
}

async fn build_template_if_missing(
    server: &TestServer,
    admin: &mut PgConnection,
    template: &str,
    sets: Vec<MigrationSet>,
) -> Result<(), String> {
    let ready: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)",
    )
    .bind(template)
    .fetch_one(&mut *admin)
    .await
    .map_err(|e| e.to_string())?;
    if ready {
        return Ok(());
    }
    let quoted = quote_identifier(template);
    // A template left half-built by a crashed run is rebuilt from scratch.
    for statement in [
        format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        format!("CREATE DATABASE {quoted}"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *admin)
            .await
            .map_err(|e| e.to_string())?;
    }
    let migrator = Migrator::new(sets).map_err(|e| error_chain(&e))?;
    let mut connection = connect(&server.admin.clone().database(template))
        .await
        .map_err(|e| error_chain(&e))?;
    migrator
        .up(&mut connection, UpOptions::default())
        .await
        .map_err(|e| error_chain(&e))?;
    connection.close().await.map_err(|e| e.to_string())?;
    // No connections allowed: CREATE DATABASE ... TEMPLATE fails while anyone is connected.
    let seal = format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false");
    sqlx::raw_sql(AssertSqlSafe(seal))
        .execute(&mut *admin)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Drops test databases whose creating process no longer exists (a test binary killed
/// before its databases were dropped). Names carry the creator's pid.
async fn remove_databases_of_dead_processes(server: &TestServer) {
    let Ok(mut admin) = connect(&server.admin).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'fodi\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name
            .split('_')
            .nth(2)
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let statement = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_identifier(&name)
            );
            let _ = sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut admin)
                .await;
        }
    }
    let _ = admin.close().await;
}

async fn admin_execute(server: &TestServer, statement: &str) -> Result<(), String> {
    let mut admin = connect(&server.admin).await.map_err(|e| error_chain(&e))?;
    sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await.map_err(|e| e.to_string())
}

/// What `Migrator::up` does beside applying migrations (granting reads of the history
/// tables, ...): a change of it must give new templates too. Bump it with such a change.
const UP_REVISION: u32 = 2;

/// `fodi_tpl_<hash>`: one template per list of sets and their migrations' checksums, so
/// editing a migration (during development) gives a new template instead of a stale one.
fn template_name(sets: &[MigrationSet]) -> String {
    let mut hasher = DefaultHasher::new();
    UP_REVISION.hash(&mut hasher);
    for set in sets {
        set.name().hash(&mut hasher);
        set.schema().hash(&mut hasher);
        for migration in set.migrations() {
            migration.version().hash(&mut hasher);
            migration.checksum().hash(&mut hasher);
        }
    }
    format!("fodi_tpl_{:016x}", hasher.finish())
}

fn stable_hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    nanos ^ stable_hash(&format!("{:?}", std::thread::current().id())) as u32
}

/// `postgres://u:p@h:1/old?x` with the database replaced: `postgres://u:p@h:1/new?x`.
fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |start| &tail[start..]);
    format!("{scheme}://{authority}/{database}{query}")
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A `pooling = "transaction"` [`Db`] of database `name` through the PgBouncer of `pattern`
/// (`{database}` standing for the name), its sessions on `server` itself.
async fn through_pgbouncer(pattern: &str, server: &TestServer, name: &str) -> Db {
    let config = crate::DbConfig {
        pooling: crate::Pooling::Transaction,
        session_url: Some(server.url(name)),
        max_connections: POOL_SIZE,
        ..crate::DbConfig::with_url(pattern.replace("{database}", name))
    };
    Db::connect(&config)
        .await
        .unwrap_or_else(|error| panic!("cannot reach {name} through TEST_PGBOUNCER_URL: {error}"))
}

/// A new private directory for a cluster of one test (`<temp>/<prefix>-<pid>-<n>`), handed to
/// the user PostgreSQL runs as; what a previous process of the same pid left there is removed.
// A fixture that cannot be set up fails its test, with the step that failed.
#[allow(clippy::expect_used)]
fn cluster_dir(prefix: &str) -> (std::path::PathBuf, crate::cluster::server_user::ServerUser) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let server_user =
        crate::cluster::server_user::ServerUser::detect().expect("a user to run PostgreSQL as");
    server_user
        .create_private_dir(&dir)
        .expect("the cluster's directory");
    (dir, server_user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/old?sslmode=disable", "new"),
            "postgres://u:p@h:5432/new?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://u@h", "new"),
            "postgres://u@h/new"
        );
        assert_eq!(
            url_with_database("postgres://u@h/?host=/tmp", "new"),
            "postgres://u@h/new?host=/tmp"
        );
    }
}
