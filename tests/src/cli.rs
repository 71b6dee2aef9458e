//! Running the `strata` CLI, or a `strata-broker` that must not start, as a child
//! process bounded in time.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{WAIT, binary};

/// The outcome of one `strata` run.
#[derive(Debug)]
pub struct CliRun {
    /// The exit code, `None` if killed by a signal.
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// Runs `strata` with `args` and `stdin`, against `bootstrap` unless `None`; kills it and
/// fails the test if it runs longer than [`WAIT`].
///
/// # Panics
/// If `strata` does not exit within [`WAIT`].
pub fn strata(bootstrap: Option<&str>, args: &[&str], stdin: &[u8]) -> CliRun {
    let mut command = Command::new(binary("strata"));
    command.env_remove("STRATA_BOOTSTRAP");
    if let Some(bootstrap) = bootstrap {
        command.args(["--bootstrap", bootstrap]);
    }
    command.args(args);
    run_bounded(&mut command, stdin, WAIT)
}

/// Runs `strata-broker` on `data_dir` with `args` and `environment`, expecting it not to
/// start, and waits for it to exit.
///
/// # Panics
/// If it is still running after [`WAIT`]: it started when it should not have.
pub fn broker_failing_to_start(
    data_dir: &Path,
    args: &[&str],
    environment: &[(&str, &str)],
) -> CliRun {
    let mut command = Command::new(binary("strata-broker"));
    command
        .args(["--metrics-listen", "127.0.0.1:0", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(environment.iter().copied());
    run_bounded(&mut command, b"", WAIT)
}

/// Runs `command` in a process group of its own with `stdin` as its input, and collects
/// what it prints. If it runs longer than `within`, kills the whole group (so a script's
/// children go too) and fails the test.
///
/// # Panics
/// If the command cannot be spawned or does not exit within `within`.
pub fn run_bounded(command: &mut Command, stdin: &[u8], within: Duration) -> CliRun {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let group = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: signals the process group of our own child, which it leads.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
            panic!("{command:?} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    writer.join().expect("stdin writer");
    CliRun {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Asserts a run failed with `code` and printed `message` on stderr.
///
/// # Panics
/// If it did not.
pub fn assert_fails(run: &CliRun, code: i32, message: &str) {
    assert_eq!(run.code, Some(code), "{run:?}");
    assert!(
        run.stderr.contains(message),
        "expected {message:?} in {run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
}
