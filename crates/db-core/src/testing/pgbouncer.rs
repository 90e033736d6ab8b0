//! A real PgBouncer in front of the test server, in transaction mode, with a small pool so
//! that its clients really share server connections.
//!
//! The program is `PGBOUNCER` when set, else `pgbouncer` on `PATH` or in `/usr/sbin` (Debian's
//! package). It runs as the server's user (PgBouncer refuses to run as root), listens on a free
//! port of 127.0.0.1, trusts its clients (the users of `users` only) and reaches the server
//! as those same users. [`PgBouncer::show`] reads its admin console.

// A fixture that cannot be set up fails its test, with the step that failed.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;

use crate::cluster::PgBinaries;
use crate::cluster::server_user::ServerUser;

/// A running PgBouncer; stopped and its directory removed when dropped.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The first of its users, allowed on the admin console.
    admin: String,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode before the server of `server`, with
    /// `default_pool_size = pool_size`, letting in `users` (who must be able to log in to
    /// the server without a password, as on the test cluster's socket).
    ///
    /// # Panics
    /// When PgBouncer is not installed or does not start.
    pub async fn start(server: &PgConnectOptions, users: &[&str], pool_size: u32) -> Self {
        let admin = (*users.first().expect("at least one user")).to_owned();
        let (dir, server_user) = super::cluster_dir("fodi-pgbouncer");
        let port = free_port();
        let server_host = match server.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => server.get_host().to_owned(),
        };
        let userlist: String = users
            .iter()
            .map(|user| format!("\"{user}\" \"\"\n"))
            .collect();
        write_owned(&server_user, &dir.join("userlist.txt"), &userlist);
        let ini = format!(
            "[databases]\n\
             * = host={server_host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = {admin}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 1000\n\
             stats_period = 1\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            server_port = server.get_port(),
            dir = dir.display(),
        );
        let ini_path = dir.join("pgbouncer.ini");
        write_owned(&server_user, &ini_path, &ini);
        let child = server_user
            .command(&program())
            .arg(&ini_path)
            // It logs to its logfile and to standard error: the file is kept, read by `log`.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts (install Debian's pgbouncer, or set PGBOUNCER)");
        let bouncer = Self {
            child,
            port,
            dir,
            admin,
        };
        bouncer.wait_until_listening().await;
        bouncer
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of `database` through PgBouncer, as `user`.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!(
            "postgres://{user}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// The rows of `SHOW <what>` (`POOLS`, `STATS`, `SERVERS`, ...) from the admin console, each
    /// a map of column to value. Asked with `psql`: the console speaks the simple protocol only.
    ///
    /// # Panics
    /// When the console does not answer.
    pub fn show(&self, what: &str) -> Vec<HashMap<String, String>> {
        let psql = PgBinaries::find(None)
            .expect("the PostgreSQL programs")
            .program("psql");
        let output = std::process::Command::new(psql)
            .args([
                "--no-psqlrc",
                "--csv",
                "--host=127.0.0.1",
                "--dbname=pgbouncer",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={}", self.admin))
            .arg(format!("--command=SHOW {what}"))
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "SHOW {what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        lines
            .map(|line| {
                header
                    .iter()
                    .zip(line.split(','))
                    .map(|(column, value)| ((*column).to_owned(), value.to_owned()))
                    .collect()
            })
            .collect()
    }

    /// Its log so far (connections, errors), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    async fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pgbouncer never listened on {}: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn program() -> PathBuf {
    if let Some(program) = std::env::var_os("PGBOUNCER") {
        return PathBuf::from(program);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("pgbouncer"))
}

fn write_owned(server_user: &ServerUser, path: &Path, text: &str) {
    std::fs::write(path, text).expect("pgbouncer's files are written");
    server_user
        .hand_over(path)
        .expect("pgbouncer's files are handed over");
}

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
