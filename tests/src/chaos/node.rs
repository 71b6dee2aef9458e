//! Broker processes of a run: started from the binary next to `strata-chaos`, on a
//! loopback port the OS picks, in the run's own directory; killed, paused and
//! restarted by the nemesis. Every pid started is also kept in a process-wide list, so
//! a signal handler can kill them all even while their owner is busy elsewhere.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::ChaosError;

/// How long a broker may take to print its address.
pub const START_WAIT: Duration = Duration::from_secs(30);
/// How long a broker may take to shut down after `SIGTERM` before it is killed.
const TERMINATE_WAIT: Duration = Duration::from_secs(30);

/// Every broker pid started and not yet reaped.
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Sends `SIGKILL` to every broker still running (paused ones included): the last
/// resort of a signal handler. Safe to call more than once.
pub fn kill_every_broker() {
    let running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    for pid in running.iter() {
        signal(*pid, libc::SIGKILL);
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: sends a signal to a child of ours that has not been reaped, so the pid
    // cannot have been reused; no memory is touched.
    unsafe { libc::kill(pid, signal) };
}

/// The path of a binary in the same directory as the running executable.
///
/// # Errors
/// [`ChaosError::MissingBinary`] if it is not there.
pub fn sibling_binary(name: &str) -> Result<PathBuf, ChaosError> {
    let exe = std::env::current_exe().map_err(ChaosError::io("find strata-chaos itself"))?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(ChaosError::MissingBinary(path))
    }
}

/// How to start one broker: its binary, environment, data directory, log file and
/// settings.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The broker binary.
    pub binary: PathBuf,
    /// Environment variables set for it (on top of the harness's own, `RUST_LOG` aside).
    pub env: Vec<(String, String)>,
    /// Its data directory, kept across restarts.
    pub data_dir: PathBuf,
    /// Where its stderr goes (appended to across restarts).
    pub log: PathBuf,
    /// `--set KEY=VALUE` settings.
    pub settings: Vec<String>,
    /// Further arguments (a cluster member's `--node-id`, `--cluster-listen`, `--peers`),
    /// as they are at its next start.
    pub args: Vec<String>,
}

/// One broker, running or not. Owns its process: dropping it kills the process.
/// Not thread-safe; one owner drives it.
#[derive(Debug)]
pub struct Node {
    spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// A node that is not started yet.
    pub fn new(spec: NodeSpec) -> Self {
        Self {
            spec,
            child: None,
            paused: false,
        }
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// How it starts; a change applies from its next start.
    pub fn spec_mut(&mut self) -> &mut NodeSpec {
        &mut self.spec
    }

    /// Whether it runs (paused or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker on the same data and settings; returns its client address.
    ///
    /// # Errors
    /// [`ChaosError::BrokerStart`] if it exits or prints no address within
    /// [`START_WAIT`] (it is killed then); [`ChaosError::Io`] if it cannot be spawned.
    ///
    /// # Panics
    /// If it is already running.
    pub fn start(&mut self) -> Result<SocketAddr, ChaosError> {
        assert!(self.child.is_none(), "the broker is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(ChaosError::io(format!("open {}", self.spec.log.display())))?;
        let mut command = Command::new(&self.spec.binary);
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-level", "warn"])
            .arg("--data-dir")
            .arg(&self.spec.data_dir)
            .env_remove("RUST_LOG")
            .envs(self.spec.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for setting in &self.spec.settings {
            command.args(["--set", setting]);
        }
        command.args(&self.spec.args);
        let mut child = command.spawn().map_err(ChaosError::io(format!(
            "spawn {}",
            self.spec.binary.display()
        )))?;
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        self.paused = false;
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads the startup line, then drains stdout so the broker never blocks on it.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            lines.for_each(drop);
        });
        let line = match receiver.recv_timeout(START_WAIT) {
            Ok(Some(Ok(line))) => line,
            other => {
                self.kill_9();
                let why = match other {
                    Err(_) => format!("no address printed within {START_WAIT:?}"),
                    Ok(_) => "it exited before printing its address".to_owned(),
                };
                return Err(self.start_error(why));
            }
        };
        // "strata-broker listening on ADDR (metrics on ADDR)"
        line.split_whitespace()
            .nth(3)
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| self.start_error(format!("unexpected startup line {line:?}")))
    }

    fn start_error(&self, why: String) -> ChaosError {
        ChaosError::BrokerStart {
            why,
            log: self.spec.log.clone(),
        }
    }

    /// `kill -9`, then reaps the process: nothing is flushed or closed. Does nothing if
    /// it is not running.
    pub fn kill_9(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&child.id());
        self.paused = false;
    }

    /// `SIGTERM` (a controlled shutdown), then waits for the exit, up to
    /// [`TERMINATE_WAIT`] before a `kill -9`; returns whether it exited on its own. Does
    /// nothing if it is not running.
    pub fn terminate(&mut self) -> bool {
        let Some(pid) = self.pid() else {
            return true;
        };
        self.resume();
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + TERMINATE_WAIT;
        let child = self.child.as_mut().expect("running");
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                self.kill_9();
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_9();
        false
    }

    /// `SIGSTOP`: the broker keeps its sockets open and answers nothing.
    pub fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGSTOP);
            self.paused = true;
        }
    }

    /// `SIGCONT` after [`pause`](Self::pause).
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid().filter(|_| self.paused) {
            signal(pid, libc::SIGCONT);
            self.paused = false;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}
