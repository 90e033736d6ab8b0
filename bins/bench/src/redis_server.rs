//! A private redis-server for the in-process cache tier's reference: started on a free
//! loopback port without persistence, killed when dropped.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use db_core::sqlx;
use redis::aio::MultiplexedConnection;

use crate::cluster::BenchCluster;
use crate::report::progress;

pub struct RedisServer {
    child: Child,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Starts `redis-server` from PATH and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server")?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        progress(&format!("redis-server on port {port}"));
        Ok(server)
    }

    /// Copies every live cache entry as `<user>:<key>` -> JSON text, and opens one connection
    /// per client.
    pub async fn fill_from(
        &self,
        bench: &BenchCluster,
        clients: usize,
    ) -> anyhow::Result<Vec<MultiplexedConnection>> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients.max(1) {
            connections.push(client.get_multiplexed_async_connection().await?);
        }
        let entries: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(
            "SELECT user_id, cache_key, value::text FROM ai.cache_entries WHERE expires_at > now()",
        )
        .fetch_all(bench.db.primary())
        .await?;
        progress(&format!("copying {} entries into Redis", entries.len()));
        for chunk in entries.chunks(1_000) {
            let mut pipeline = redis::pipe();
            for (user, key, value) in chunk {
                pipeline
                    .cmd("SET")
                    .arg(format!("{user}:{key}"))
                    .arg(value)
                    .ignore();
            }
            pipeline
                .query_async::<()>(&mut connections[0])
                .await
                .context("cannot fill Redis")?;
        }
        Ok(connections)
    }
}
