//! Spawning a process in a process group of its own, capturing its output line by line, and
//! signalling the whole group, so that its own children never outlive it. A child gets a clean
//! environment: what its spec names, never the supervisor's tokens or database URLs by accident.

use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::logs::{ProcessLogs, Stream};
use crate::spec::{ProcessSpec, StopSignal};

/// Variables of the supervisor's environment every child gets (when set), with every `LC_*`:
/// what programs need to find things, name the user and speak the right language and time.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// The part of this process's environment a child of `spec` inherits.
fn inherited(spec: &ProcessSpec) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(key, _)| {
            key.to_str().is_some_and(|key| {
                BASE_ENV.contains(&key)
                    || key.starts_with("LC_")
                    || spec.inherit_env.iter().any(|named| named == key)
            })
        })
        .collect()
}

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
        .kill_on_drop(true)
        .env_clear()
        .envs(inherited(spec));
    // The user's HOME, USER and LOGNAME replace the supervisor's; `env_file` and `env` may
    // still set them. Its primary group only: supplementary groups are dropped.
    if let Some(user) = &spec.user {
        let run_as = RunAs::resolve(user)?;
        command
            .uid(run_as.uid)
            .gid(run_as.gid)
            .env("HOME", &run_as.home)
            .env("USER", &run_as.name)
            .env("LOGNAME", &run_as.name);
    }
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

/// The account a process runs as (`user` of its spec), from the system's user database.
pub(crate) struct RunAs {
    uid: u32,
    gid: u32,
    name: String,
    home: std::path::PathBuf,
}

impl RunAs {
    pub(crate) fn resolve(user: &str) -> Result<Self, String> {
        use nix::unistd::{Uid, User};
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        }
        .map_err(|error| format!("user {user:?}: cannot read the user database: {error}"))?;
        let account = found.ok_or_else(|| format!("user {user:?} does not exist"))?;
        Ok(Self {
            uid: account.uid.as_raw(),
            gid: account.gid.as_raw(),
            name: account.name,
            home: account.dir,
        })
    }
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

/// The variables of a dotenv file, read by dotenvy without touching this process's own
/// environment: `KEY=value` lines, `#` comments, blank lines, `export ` prefixes, quotes.
/// Single-quoted values are literal; bare and double-quoted ones expand `$VAR` and `${VAR}`,
/// from the supervisor's environment first, then from earlier lines of the file.
fn read_env_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read env file {}: {error}", path.display()))?;
    dotenvy::from_read_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| match error {
            dotenvy::Error::LineParse(line, index) => {
                // dotenvy names the faulty line by its text (less a trailing comment), not
                // its number: the number is that of the first line that reads so, since an
                // earlier one would have failed the same way.
                let first = line.lines().next().unwrap_or_default().trim_end();
                let number = text
                    .lines()
                    .position(|candidate| {
                        candidate
                            .trim_end()
                            .strip_prefix(first)
                            .is_some_and(|rest| {
                                rest.is_empty() || rest.trim_start().starts_with('#')
                            })
                    })
                    .map_or(String::new(), |found| format!("{}:", found + 1));
                format!(
                    "{}:{number} expected KEY=value, cannot read {line:?} at character {}",
                    path.display(),
                    index + 1
                )
            }
            other => format!("cannot read env file {}: {other}", path.display()),
        })
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
        std::fs::write(&path, "A=1\nNOEQUALS # why\nB=2\n").unwrap();
        let error = read_env_file(&path).unwrap_err();
        assert!(error.contains(":2: "), "{error}");
        assert!(error.contains("NOEQUALS"), "{error}");
    }

    #[test]
    fn env_files_follow_dotenv_quoting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        std::fs::write(
            &path,
            "FODI_TEST_HOST=db # the primary\nURL=\"postgres://${FODI_TEST_HOST}/fodi\"\nLITERAL='${FODI_TEST_HOST}'\nLINES=\"a\\nb\"\n",
        )
        .unwrap();
        assert_eq!(
            read_env_file(&path).unwrap(),
            [
                ("FODI_TEST_HOST".to_owned(), "db".to_owned()),
                ("URL".to_owned(), "postgres://db/fodi".to_owned()),
                ("LITERAL".to_owned(), "${FODI_TEST_HOST}".to_owned()),
                ("LINES".to_owned(), "a\nb".to_owned()),
            ]
        );
        assert!(
            read_env_file(&dir.path().join("missing"))
                .unwrap_err()
                .starts_with("cannot read env file")
        );
    }
}
