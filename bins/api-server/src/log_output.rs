//! Where the api-server's log lines go: standard output, through one shared 64 KiB buffer.
//!
//! A line is copied into the buffer under a lock; the buffer reaches the output when it fills
//! (written by the thread whose line did not fit) and every [`FLUSH_EVERY`] (by a thread of
//! its own), so a busy server makes one system call per buffer instead of one per line.
//! Nothing is dropped: a stalled reader blocks the writer, as standard output would.
//!
//! Why not `tracing-appender`'s non-blocking writer: it hands every line to its thread over a
//! channel, waking that thread line by line; with a line per request, the wake-ups cost more
//! than the writing (a tenth of the server's CPU per cached read on 2 cores, see
//! docs/benchmarks.md).

use std::io::{BufWriter, Stdout, Write};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The longest a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const CAPACITY: usize = 64 * 1024;

static OUTPUT: LazyLock<Mutex<BufWriter<Stdout>>> =
    LazyLock::new(|| Mutex::new(BufWriter::with_capacity(CAPACITY, std::io::stdout())));

fn output() -> MutexGuard<'static, BufWriter<Stdout>> {
    OUTPUT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the flushing thread; the returned guard writes what is buffered when dropped.
pub fn start() -> std::io::Result<FlushOnDrop> {
    std::thread::Builder::new()
        .name("api-server-log".into())
        .spawn(|| {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                // An output that is gone (closed pipe) cannot be reported anywhere.
                let _ = output().flush();
            }
        })?;
    Ok(FlushOnDrop)
}

/// A writer for the `tracing` subscriber: one per log line.
pub fn line() -> Line {
    Line(output())
}

/// One log line being written, holding the buffer.
pub struct Line(MutexGuard<'static, BufWriter<Stdout>>);

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }

    /// Left to the flushing thread: a flush per line is what the buffer avoids.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes out the buffered lines when dropped (at exit).
pub struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let _ = output().flush();
    }
}
