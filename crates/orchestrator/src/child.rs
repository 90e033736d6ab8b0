//! Spawning a process in a process group of its own, capturing its output line by line, and
//! signalling the whole group, so that its own children never outlive it.

use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::logs::{ProcessLogs, Stream};
use crate::spec::{ProcessSpec, StopSignal};

/// Spawns the process of `spec` as the leader of a new process group, its stdout and stderr
/// going to `logs`.
pub(crate) fn spawn(spec: &ProcessSpec, logs: &Arc<ProcessLogs>) -> Result<Child, String> {
    let mut command = Command::new(&spec.command);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: stopping it signals everything it started, too.
        .process_group(0)
        // Should this handle be dropped without a stop (a panic), the child still dies.
        .kill_on_drop(true);
    if let Some(path) = &spec.env_file {
        for (key, value) in read_env_file(path)? {
            command.env(key, value);
        }
    }
    command.envs(&spec.env);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", spec.command))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward(stdout, Stream::Stdout, logs.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward(stderr, Stream::Stderr, logs.clone()));
    }
    Ok(child)
}

async fn forward(output: impl AsyncRead + Unpin, stream: Stream, logs: Arc<ProcessLogs>) {
    let mut lines = BufReader::new(output).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => logs.push(stream, line),
            Ok(None) => return,
            // Not UTF-8, or the pipe broke: what was read is kept; the rest is lost.
            Err(_) => return,
        }
    }
}

/// `KEY=value` lines; `#` comments and blank lines skipped; optional quotes removed.
fn read_env_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read env file {}: {error}", path.display()))?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{}:{}: expected KEY=value", path.display(), number + 1))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        pairs.push((key.trim().to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

fn signal_of(signal: StopSignal) -> Signal {
    match signal {
        StopSignal::Term => Signal::SIGTERM,
        StopSignal::Int => Signal::SIGINT,
        StopSignal::Quit => Signal::SIGQUIT,
        StopSignal::Hup => Signal::SIGHUP,
        StopSignal::Kill => Signal::SIGKILL,
    }
}

/// Sends `signal` to the process group led by `pid`; a group already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: StopSignal) {
    signal_group_raw(pid, signal_of(signal));
}

/// SIGKILL to the whole group: whatever is left of it (a grandchild that ignored the stop
/// signal, or one that outlived a crashed parent).
pub(crate) fn kill_group(pid: u32) {
    signal_group_raw(pid, Signal::SIGKILL);
}

/// SIGCONT to the group: a stopped (SIGSTOP) process cannot act on a stop signal until it
/// runs again.
pub(crate) fn continue_group(pid: u32) {
    signal_group_raw(pid, Signal::SIGCONT);
}

fn signal_group_raw(pid: u32, signal: Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if let Err(error) = killpg(Pid::from_raw(pid), signal)
        && error != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, ?signal, %error, "cannot signal the process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_key_value_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "# a comment\n\nPORT=8081\nexport NAME=\"go backend\"\nEMPTY=\nQUOTED='x=y'\n",
        )
        .unwrap();
        assert_eq!(
            read_env_file(&path).unwrap(),
            [
                ("PORT".to_owned(), "8081".to_owned()),
                ("NAME".to_owned(), "go backend".to_owned()),
                ("EMPTY".to_owned(), String::new()),
                ("QUOTED".to_owned(), "x=y".to_owned()),
            ]
        );
        std::fs::write(&path, "NOEQUALS\n").unwrap();
        assert!(read_env_file(&path).unwrap_err().contains(":1:"));
    }
}
