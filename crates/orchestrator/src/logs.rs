//! A process's output: each line to tracing, to a bounded ring of recent lines, and optionally
//! to a file rotated by size.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use crate::spec::LogSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub stream: Stream,
    pub line: String,
}

/// Recent lines of one process (all its runs), and its log file.
pub(crate) struct ProcessLogs {
    process: String,
    capacity: usize,
    recent: Mutex<VecDeque<LogLine>>,
    file: Mutex<Option<RotatingFile>>,
}

impl ProcessLogs {
    pub(crate) fn new(process: &str, spec: &LogSpec) -> Self {
        let file = spec.file.as_ref().map(|path| RotatingFile {
            path: path.clone(),
            max_bytes: spec.max_file_bytes.max(1),
            keep: spec.keep_files,
            open: None,
            written: 0,
        });
        Self {
            process: process.to_owned(),
            capacity: spec.ring_lines,
            recent: Mutex::new(VecDeque::with_capacity(spec.ring_lines.min(4_096))),
            file: Mutex::new(file),
        }
    }

    pub(crate) fn push(&self, stream: Stream, line: String) {
        match stream {
            Stream::Stdout => tracing::info!(process = %self.process, "{line}"),
            Stream::Stderr => tracing::warn!(process = %self.process, "{line}"),
        }
        if let Some(file) = self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            file.write_line(&line);
        }
        if self.capacity == 0 {
            return;
        }
        let at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(LogLine {
            at_ms,
            stream,
            line,
        });
    }

    /// The last `count` lines, oldest first.
    pub(crate) fn tail(&self, count: usize) -> Vec<LogLine> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .skip(recent.len().saturating_sub(count))
            .cloned()
            .collect()
    }
}

struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    open: Option<File>,
    written: u64,
}

impl RotatingFile {
    fn write_line(&mut self, line: &str) {
        if let Err(error) = self.try_write(line) {
            // Losing the file must not stop the process; the ring and tracing still have it.
            tracing::warn!(path = %self.path.display(), %error, "cannot write the process log file");
            self.open = None;
        }
    }

    fn try_write(&mut self, line: &str) -> std::io::Result<()> {
        if self.open.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.written = file.metadata()?.len();
            self.open = Some(file);
        }
        if self.written > 0 && self.written + line.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
            return self.try_write(line);
        }
        if let Some(file) = self.open.as_mut() {
            file.write_all(line.as_bytes())?;
            file.write_all(b"\n")?;
            self.written += line.len() as u64 + 1;
        }
        Ok(())
    }

    /// `file` -> `file.1` -> `file.2` ...; the oldest beyond `keep` is removed.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.open = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                if numbered(n).exists() {
                    std::fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.written = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        let logs = ProcessLogs::new(
            "p",
            &LogSpec {
                ring_lines: 3,
                file: Some(path.clone()),
                max_file_bytes: 20,
                keep_files: 2,
            },
        );
        for n in 0..10 {
            logs.push(Stream::Stdout, format!("line {n}"));
        }
        let tail: Vec<String> = logs.tail(10).into_iter().map(|l| l.line).collect();
        assert_eq!(tail, ["line 7", "line 8", "line 9"]);
        assert_eq!(logs.tail(1)[0].line, "line 9");
        // Two 7-byte lines fit in 20 bytes; a third rotates.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 8\nline 9\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p.log.1")).unwrap(),
            "line 6\nline 7\n"
        );
        assert!(dir.path().join("p.log.2").exists());
        assert!(!dir.path().join("p.log.3").exists(), "only two kept");
    }
}
