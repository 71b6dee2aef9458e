//! A `strata` run kept as a child process, for tests that watch its stderr (or stdout)
//! line by line while it runs. Every wait has a deadline; the child is killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::{WAIT, binary};

/// A running `strata` whose output lines arrive on channels.
#[derive(Debug)]
pub struct StrataChild {
    child: Child,
    /// Its stdin, until [`close_stdin`](Self::close_stdin).
    pub stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl StrataChild {
    /// Starts `strata --bootstrap BOOTSTRAP ARGS...` with piped stdio.
    pub fn spawn(bootstrap: &str, args: &[&str]) -> Self {
        let mut child = Command::new(binary("strata"))
            .env_remove("STRATA_BOOTSTRAP")
            .args(["--bootstrap", bootstrap])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// Writes `bytes` to its stdin.
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes its stdin: the end of its input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, waiting at most `within`.
    pub fn stdout_line(&self, within: Duration) -> String {
        next_line(&self.stdout, within, "stdout")
    }

    /// Stderr lines until one contains `text`, waiting at most `within` in all; returns
    /// that line.
    pub fn stderr_line_containing(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = next_line(&self.stderr, left, text);
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Waits for the exit (at most [`WAIT`]); returns the exit code and the rest of stderr.
    pub fn exit(mut self) -> (Option<i32>, String) {
        self.close_stdin();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for strata") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not exit within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let rest: Vec<String> = self.stderr.iter().collect();
        (status.code(), rest.join("\n"))
    }
}

impl Drop for StrataChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

fn next_line(lines: &Receiver<String>, within: Duration, what: &str) -> String {
    match lines.recv_timeout(within) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("no line ({what}) within {within:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("strata closed its output before {what}"),
    }
}
