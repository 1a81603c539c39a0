//! Reading a child's output line by line: the lines are kept (the last few hundred, for failure
//! messages), and a caller can wait for the first line that announces something (a URL).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Lines kept for failure messages.
const KEPT_LINES: usize = 400;

/// The lines a child wrote so far (a clone shares them).
#[derive(Clone, Default)]
pub struct LineLog {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl LineLog {
    /// Reads `stream` on a thread of its own until it ends, keeping every line, and sends each
    /// line for which `announce` finds something to the returned receiver.
    pub fn follow<T: Send + 'static>(
        stream: impl Read + Send + 'static,
        announce: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> (Self, mpsc::Receiver<T>) {
        let log = Self::default();
        let kept = log.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(found) = announce(&line) {
                    let _ = tx.send(found);
                }
                kept.push(line);
            }
        });
        (log, rx)
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Everything kept, one line after the other.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        for line in lines.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// The first announcement within `within`, or `None` (the stream ended or stayed silent).
pub fn first<T>(announcements: &mpsc::Receiver<T>, within: Duration) -> Option<T> {
    announcements.recv_timeout(within).ok()
}
