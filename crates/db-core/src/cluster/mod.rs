//! The embedded default: a private PostgreSQL cluster in a directory of the project.
//!
//! [`LocalCluster::start`] initialises the directory on first use (`initdb`), starts the server
//! with `pg_ctl`, or attaches to a server already running on that directory (started by an
//! earlier run, or by another process using the same directory). The server listens only on a
//! Unix socket inside that private directory: no TCP port is opened, so no other local user
//! can connect and no port can collide; the port number only names the socket file.

mod binaries;
pub(crate) mod server_user;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

pub use binaries::PgBinaries;
use server_user::ServerUser;

/// How much a crash of the machine may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: a committed transaction survives a power cut.
    Durable,
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: for test clusters whose data
    /// is thrown away, several times faster on small transactions.
    Ephemeral,
}

/// Where and how to run the local cluster.
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// Holds `data/` (the cluster), `postgres.log` and the server's socket.
    pub dir: PathBuf,
    /// Directory of `initdb`, `pg_ctl` and `postgres`; found automatically when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Names the socket file (`.s.PGSQL.<port>`); 5432 lets `psql -h DIR` work without `-p`.
    pub port: u16,
    pub durability: Durability,
    /// Extra `postgresql.conf` settings, e.g. `("max_connections", "300")`.
    pub settings: Vec<(String, String)>,
    /// Stop the server when the [`LocalCluster`] is dropped, if this process started it.
    pub stop_on_drop: bool,
}

impl LocalClusterConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            bin_dir: None,
            port: 5432,
            durability: Durability::Durable,
            settings: Vec::new(),
            stop_on_drop: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl, postgres) were not found (searched: {searched}). \
         Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@15`) \
         and/or set PG_BIN to their directory, or point database.url (FODI__DATABASE__URL or \
         DATABASE_URL) at a running server instead of using the embedded cluster"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "PostgreSQL refuses to run as root and there is no `{user}` account to run it as; \
         create one (`useradd --system {user}`), run as an ordinary user, or set a database url"
    )]
    NoUnprivilegedUser { user: String },
    #[error(
        "the cluster directory {dir} is not reachable by the `{user}` account the server runs as \
         (as root, PostgreSQL runs unprivileged), because {blocking} is closed to it. Choose a \
         directory it can reach, e.g. FODI__DATABASE__LOCAL_DIR=/var/lib/fodi/pg"
    )]
    UnreachableByServerUser {
        dir: PathBuf,
        blocking: PathBuf,
        user: String,
    },
    #[error("could not {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not {action}:\n{output}")]
    Command { action: String, output: String },
}

/// A running local PostgreSQL cluster; see the module documentation.
#[derive(Debug)]
pub struct LocalCluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    binaries: PgBinaries,
    server_user: ServerUser,
    started_here: bool,
    stop_on_drop: bool,
    running: bool,
}

impl LocalCluster {
    /// Starts the cluster of `config.dir`, creating it on first use, or attaches to the
    /// server already running on it. Safe to call from several processes at once: they
    /// serialise on a lock file in the directory and end up sharing one server.
    pub async fn start(config: LocalClusterConfig) -> Result<Self, ClusterError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(&config))
            .await
            .map_err(|join| ClusterError::Io {
                action: "start the local cluster".into(),
                source: std::io::Error::other(join),
            })?
    }

    fn start_blocking(config: &LocalClusterConfig) -> Result<Self, ClusterError> {
        let binaries = PgBinaries::find(config.bin_dir.as_deref())?;
        let server_user = ServerUser::detect()?;
        let dir = std::path::absolute(&config.dir).map_err(|source| ClusterError::Io {
            action: format!("resolve {}", config.dir.display()),
            source,
        })?;
        server_user.create_private_dir(&dir)?;

        let lock_path = dir.join("cluster.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| ClusterError::Io {
                action: format!("open {}", lock_path.display()),
                source,
            })?;
        lock.lock().map_err(|source| ClusterError::Io {
            action: format!("lock {}", lock_path.display()),
            source,
        })?;

        let socket_dir = socket_dir_for(&dir, config.port);
        if socket_dir != dir {
            server_user.create_private_dir(&socket_dir)?;
        }
        let mut cluster = Self {
            data_dir: dir.join("data"),
            socket_dir,
            log_file: dir.join("postgres.log"),
            port: config.port,
            binaries,
            server_user,
            started_here: false,
            stop_on_drop: config.stop_on_drop,
            running: false,
        };

        if let Some((port, socket_dir)) = cluster.running_server()? {
            tracing::info!(data_dir = %cluster.data_dir.display(), port, "attached to the running local PostgreSQL");
            cluster.port = port;
            cluster.socket_dir = socket_dir;
            cluster.running = true;
            return Ok(cluster);
        }
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initdb(config.durability)?;
        }
        cluster.write_settings(config)?;
        cluster.pg_ctl_start()?;
        cluster.started_here = true;
        cluster.running = true;
        tracing::info!(data_dir = %cluster.data_dir.display(), "started the local PostgreSQL");
        Ok(cluster)
        // `lock` is released here, after the server is up.
    }

    /// Options for a superuser connection to `database` over the cluster's socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.socket_dir)
            .port(self.port)
            .username("postgres")
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    /// The same as [`connect_options`](Self::connect_options), as a URL for other programs
    /// (`psql`, child processes): `postgres://postgres@localhost:PORT/DB?host=SOCKET_DIR`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            percent_encode_path(&self.socket_dir)
        )
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// Whether this process started the server (rather than attaching to a running one).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Keeps the server running after this handle is dropped.
    pub fn keep_running(&mut self) {
        self.stop_on_drop = false;
    }

    /// Stops the server (fast shutdown: open transactions roll back, then a clean checkpoint),
    /// whoever started it.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl(
            &["stop", "-m", "fast", "-w", "-t", "60"],
            "stop the local PostgreSQL",
        )?;
        self.running = false;
        Ok(())
    }

    /// `(port, socket dir)` of a server running on the data directory, if any.
    fn running_server(&self) -> Result<Option<(u16, PathBuf)>, ClusterError> {
        if !self.data_dir.join("PG_VERSION").exists() {
            return Ok(None);
        }
        let status = self.run(
            self.pg_ctl_command(&["status"]),
            "ask pg_ctl for the server status",
        )?;
        if !status.status.success() {
            return Ok(None);
        }
        // postmaster.pid: pid, data dir, start time, port, socket dir, listen address, ...
        let pid_file = self.data_dir.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).map_err(|source| ClusterError::Io {
            action: format!("read {}", pid_file.display()),
            source,
        })?;
        let lines: Vec<&str> = text.lines().collect();
        let port = lines
            .get(3)
            .and_then(|line| line.trim().parse::<u16>().ok());
        let socket_dir = lines
            .get(4)
            .map(|line| PathBuf::from(line.trim()))
            .filter(|dir| !dir.as_os_str().is_empty());
        match (port, socket_dir) {
            (Some(port), Some(socket_dir)) => Ok(Some((port, socket_dir))),
            _ => Err(ClusterError::Command {
                action: format!(
                    "read the port and socket of the running server from {}",
                    pid_file.display()
                ),
                output: text,
            }),
        }
    }

    fn initdb(&self, durability: Durability) -> Result<(), ClusterError> {
        let mut command = self.server_user.command(&self.binaries.program("initdb"));
        command.arg("--pgdata").arg(&self.data_dir).args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]);
        if durability == Durability::Ephemeral {
            command.arg("--no-sync");
        }
        let output = self.run(command, "initialise the cluster with initdb")?;
        if !output.status.success() {
            return Err(command_failed(
                "initialise the cluster with initdb",
                &output,
            ));
        }
        // Our settings live in a file of their own, rewritten at every start, so the file
        // initdb generated stays as PostgreSQL shipped it.
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|source| ClusterError::Io {
            action: format!("read {}", conf.display()),
            source,
        })?;
        text.push_str("\n# Settings of the FODI local cluster, rewritten at every start.\ninclude_if_exists = 'fodi.conf'\n");
        std::fs::write(&conf, text).map_err(|source| ClusterError::Io {
            action: format!("write {}", conf.display()),
            source,
        })?;
        Ok(())
    }

    fn write_settings(&self, config: &LocalClusterConfig) -> Result<(), ClusterError> {
        let mut settings = vec![
            ("port".to_owned(), self.port.to_string()),
            ("listen_addresses".to_owned(), quote_setting("")),
            (
                "unix_socket_directories".to_owned(),
                quote_setting(&self.socket_dir.to_string_lossy()),
            ),
            ("unix_socket_permissions".to_owned(), "0700".to_owned()),
        ];
        if config.durability == Durability::Ephemeral {
            for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                settings.push((name.to_owned(), "off".to_owned()));
            }
        }
        settings.extend(config.settings.iter().cloned());
        let text: String = settings
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
            .collect();
        let path = self.data_dir.join("fodi.conf");
        std::fs::write(&path, text).map_err(|source| ClusterError::Io {
            action: format!("write {}", path.display()),
            source,
        })
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let log = self.log_file.to_string_lossy().into_owned();
        let output = self.run(
            self.pg_ctl_command(&["start", "-w", "-t", "60", "-l", &log]),
            "start PostgreSQL",
        )?;
        if output.status.success() {
            return Ok(());
        }
        let log_tail = std::fs::read_to_string(&self.log_file)
            .map(|text| {
                text.lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Err(ClusterError::Command {
            action: format!("start PostgreSQL on {}", self.data_dir.display()),
            output: format!(
                "{}\nlast lines of {}:\n{log_tail}",
                combined_output(&output),
                self.log_file.display()
            ),
        })
    }

    fn pg_ctl(&self, args: &[&str], action: &str) -> Result<(), ClusterError> {
        let output = self.run(self.pg_ctl_command(args), action)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(command_failed(action, &output))
        }
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut command = self.server_user.command(&self.binaries.program("pg_ctl"));
        command.arg("-D").arg(&self.data_dir).args(args);
        command
    }

    fn run(&self, mut command: Command, action: &str) -> Result<Output, ClusterError> {
        // The data directory's parent is ours and readable by the server user; a working
        // directory it cannot enter makes initdb and pg_ctl print warnings.
        if let Some(parent) = self.data_dir.parent() {
            command.current_dir(parent);
        }
        command
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| ClusterError::Io {
                action: action.to_owned(),
                source,
            })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.started_here
            && self.stop_on_drop
            && let Err(error) = self.stop()
        {
            tracing::warn!(%error, "could not stop the local PostgreSQL");
        }
    }
}

/// The socket goes in the cluster directory unless its path would exceed the 107 bytes a
/// Unix socket address holds; then in a private directory under /tmp named after it.
fn socket_dir_for(dir: &Path, port: u16) -> PathBuf {
    const SOCKET_PATH_MAX: usize = 107;
    let socket_name_len = format!("/.s.PGSQL.{port}.lock").len();
    if dir.as_os_str().len() + socket_name_len <= SOCKET_PATH_MAX {
        return dir.to_path_buf();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("fodi-pg-{:016x}", hasher.finish()))
}

fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Encodes a socket directory for the `host=` parameter of a URL.
fn percent_encode_path(path: &Path) -> String {
    let mut encoded = String::new();
    for byte in path.to_string_lossy().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn combined_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_owned()
}

fn command_failed(action: &str, output: &Output) -> ClusterError {
    ClusterError::Command {
        action: action.to_owned(),
        output: combined_output(output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_directories_get_a_short_socket_directory() {
        let short = Path::new("/work/app/.data/pg");
        assert_eq!(socket_dir_for(short, 5432), short);
        let long = PathBuf::from(format!("/{}", "deep/".repeat(30)));
        let socket = socket_dir_for(&long, 5432);
        assert!(
            socket.starts_with(std::env::temp_dir()),
            "{}",
            socket.display()
        );
        assert_eq!(
            socket,
            socket_dir_for(&long, 5432),
            "the same directory maps to the same socket dir"
        );
    }

    #[test]
    fn socket_paths_are_url_safe() {
        assert_eq!(
            percent_encode_path(Path::new("/tmp/a b/pg")),
            "/tmp/a%20b/pg"
        );
        assert_eq!(quote_setting("/it's"), "'/it''s'");
    }
}
