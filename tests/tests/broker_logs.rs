//! Broker logs written to a file carry no colour codes, nor do they on a terminal with
//! `NO_COLOR` set, and `--log-format json` (or `STRATA_LOG_FORMAT=json`) writes one JSON
//! object per line, a failure to start included.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_tests::*;

/// A broker whose stderr goes to a file or a terminal. Killed on drop.
struct LoggingBroker {
    child: Child,
}

impl LoggingBroker {
    /// Starts `strata-broker` on `data_dir` with info logs to `stderr` and `args`, with
    /// `environment` set; returns it and its client address once it serves, or the exit
    /// code if it exits first.
    fn start(
        data_dir: &Path,
        stderr: impl Into<Stdio>,
        args: &[&str],
        environment: &[(&str, &str)],
    ) -> Result<(Self, String), Option<i32>> {
        let mut child = Command::new(binary("strata-broker"))
            .args(["--metrics-listen", "127.0.0.1:0", "--log-level", "info"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("STRATA_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .envs(environment.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn strata-broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut broker = Self { child };
        match receiver.recv_timeout(WAIT) {
            // "strata-broker listening on ADDR (metrics on ADDR)"
            Ok(line) if !line.is_empty() => {
                let address = line.split_whitespace().nth(3).expect("an address");
                Ok((broker, address.to_owned()))
            }
            Ok(_) => Err(broker.wait()),
            Err(error) => panic!("strata-broker neither served nor exited: {error}"),
        }
    }

    /// Waits, at most [`WAIT`], for the process to exit; returns its exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for strata-broker") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "strata-broker did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `SIGTERM` and waits for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child's pid has no memory-safety effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.wait()
    }
}

impl Drop for LoggingBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a broker on `data_dir` with `args` and `environment` and its logs to `stderr`,
/// creates topic `logged`, and stops it with SIGTERM.
async fn run(
    data_dir: &Path,
    stderr: impl Into<Stdio>,
    args: &[&str],
    environment: &[(&str, &str)],
) {
    let args = [&["--listen", "127.0.0.1:0"], args].concat();
    let (mut broker, address) = LoggingBroker::start(data_dir, stderr, &args, environment)
        .unwrap_or_else(|code| panic!("exited with {code:?}"));
    Client::connect(&address)
        .await
        .create_topic("logged", 1, &[])
        .await;
    assert_eq!(broker.terminate(), Some(0));
}

/// What a [`run`] logged to a file.
async fn log_of_a_run(args: &[&str], environment: &[(&str, &str)]) -> String {
    let dir = data_dir();
    let log = dir.path().join("broker.log");
    let file = File::create(&log).expect("log file");
    run(&dir.path().join("data"), file, args, environment).await;
    std::fs::read_to_string(&log).expect("a UTF-8 log")
}

/// A new pseudo-terminal: the side to read and the side that is the terminal.
fn pseudo_terminal() -> (File, File) {
    let (mut reader, mut terminal) = (0, 0);
    let none = std::ptr::null_mut();
    // SAFETY: openpty writes two new descriptors into the places given; no name, terminal
    // settings or window size are asked for.
    let opened = unsafe {
        libc::openpty(
            &mut reader,
            &mut terminal,
            none,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened here and nothing else owns them.
    unsafe { (File::from_raw_fd(reader), File::from_raw_fd(terminal)) }
}

/// What a [`run`] logged to a terminal, with `environment` set.
async fn terminal_log_of_a_run(environment: &[(&str, &str)]) -> Vec<u8> {
    let dir = data_dir();
    let (mut reader, terminal) = pseudo_terminal();
    // Reads until the broker, the terminal's last holder, has exited (EIO then).
    let output = std::thread::spawn(move || {
        let mut output = Vec::new();
        let _ = reader.read_to_end(&mut output);
        output
    });
    run(dir.path(), terminal, &[], environment).await;
    output.join().expect("terminal reader")
}

#[tokio::test]
async fn a_terminal_gets_colour_unless_no_color_is_set() {
    let coloured = terminal_log_of_a_run(&[]).await;
    let text = String::from_utf8_lossy(&coloured);
    assert!(text.contains("created topic"), "{text}");
    assert!(coloured.contains(&0x1b), "no colour on a terminal:\n{text}");
    let plain = terminal_log_of_a_run(&[("NO_COLOR", "1")]).await;
    let text = String::from_utf8_lossy(&plain);
    assert!(text.contains("created topic"), "{text}");
    assert!(!plain.contains(&0x1b), "colour despite NO_COLOR:\n{text}");
}

#[tokio::test]
async fn a_log_written_to_a_file_has_no_escape_codes() {
    let log = log_of_a_run(&[], &[]).await;
    assert!(log.contains("created topic"), "{log}");
    assert!(log.contains("strata-broker stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in\n{log}");
}

/// Parses every line of `log` as a JSON object.
fn json_lines(log: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => panic!("not a JSON object: {line:?}: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_by_flag_or_environment() {
    let by_flag = log_of_a_run(&["--log-format", "json"], &[]).await;
    let by_environment = log_of_a_run(&[], &[("STRATA_LOG_FORMAT", "json")]).await;
    for log in [by_flag, by_environment] {
        let lines = json_lines(&log);
        let created = lines
            .iter()
            .find(|line| line.get("message").and_then(|m| m.as_str()) == Some("created topic"))
            .unwrap_or_else(|| panic!("no created topic line in\n{log}"));
        assert_eq!(created["level"], "INFO", "{log}");
        assert_eq!(created["topic"], "logged", "{log}");
        assert!(created.contains_key("timestamp"), "{log}");
    }
}

#[test]
fn a_failure_to_start_is_one_json_line_with_json_logs() {
    let dir = data_dir();
    let log = dir.path().join("broker.log");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let args = ["--log-format", "json", "--listen", &address];
    let file = File::create(&log).expect("log file");
    let code = LoggingBroker::start(&dir.path().join("data"), file, &args, &[])
        .map(|_| "served")
        .expect_err("the address is taken");
    assert_eq!(code, Some(4));
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<_> = json_lines(&text)
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert_eq!(errors[0]["exit_code"], 4, "{text}");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("cannot listen for clients on {address}")),
        "{text}"
    );
}
