//! A size-bounded log file for the bridge (stdout is reserved for MCP).
//!
//! When the file passes [`MAX_LOG_BYTES`] it is renamed to `.1` (replacing the previous one) and
//! a new file is started, so the logs never take more than twice that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Size at which the log file is rotated.
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// A log file that rotates itself; clone it freely (it is shared).
#[derive(Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
}

impl RotatingLog {
    /// Opens (appending) or creates the log file at `path`, creating its directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_owned(),
                file,
                written,
            })),
        })
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        let old = self.path.with_extension("log.1");
        std::fs::rename(&self.path, &old)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.written + buf.len() as u64 > MAX_LOG_BYTES && inner.written > 0 {
            // Losing the rotation is better than losing the bridge: keep appending.
            let _ = inner.rotate();
        }
        let n = inner.file.write(buf)?;
        inner.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = RotatingLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_limit() {
        let dir = std::env::temp_dir().join(format!("mcp-chat-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("bridge.log");
        let mut log = RotatingLog::open(&path).unwrap();
        let line = vec![b'x'; 100_000];
        for _ in 0..25 {
            log.write_all(&line).unwrap();
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(path.with_extension("log.1"))
            .unwrap()
            .len();
        assert!(current <= MAX_LOG_BYTES && old <= MAX_LOG_BYTES);
        assert_eq!(
            current + old,
            500_000 + 1_000_000,
            "the oldest rotation was dropped"
        );
    }
}
