//! `strata-broker` exits with a distinct code for each way it can fail to start, and says
//! why on stderr: 2 bad configuration, 3 data directory locked or unusable, 4 address in
//! use, 5 recovery failed. The codes are a contract with supervisors and scripts, so they
//! are written here as numbers, not taken from the broker's own enum.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use strata_tests::*;

/// What a broker that failed to start left behind.
#[derive(Debug)]
struct Failed {
    code: Option<i32>,
    stderr: String,
}

/// Runs `strata-broker` on `data_dir` with `args` and waits, at most [`WAIT`], for it to
/// exit.
///
/// # Panics
/// If it is still running after [`WAIT`]: it started when it should not have.
fn start_failing(data_dir: &Path, args: &[&str]) -> Failed {
    let mut child = Command::new(binary("strata-broker"))
        .args(["--metrics-listen", "127.0.0.1:0", "--log-level", "warn"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata-broker");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Read on a thread so a chatty broker cannot fill the pipe and block its own exit.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for strata-broker") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata-broker {args:?} was expected to fail but kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Failed {
        code: status.code(),
        stderr: reader.join().expect("stderr reader"),
    }
}

fn assert_fails(failed: &Failed, code: i32, reason: &str) {
    assert_eq!(failed.code, Some(code), "{failed:?}");
    assert!(
        failed.stderr.contains("strata-broker: ") && failed.stderr.contains(reason),
        "stderr should name the reason {reason:?}: {failed:?}"
    );
}

#[test]
fn a_bad_configuration_value_exits_2() {
    let dir = data_dir();
    let failed = start_failing(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--set", "frame_bytes_max=0"],
    );
    assert_fails(
        &failed,
        2,
        "invalid configuration: frame_bytes_max must be at least 1",
    );
}

#[test]
fn a_data_dir_locked_by_a_running_broker_exits_3() {
    let dir = data_dir();
    let _running = BrokerProcess::start(dir.path(), &[]);
    let failed = start_failing(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_fails(&failed, 3, "is in use");
}

#[test]
fn an_address_in_use_exits_4() {
    let dir = data_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let failed = start_failing(dir.path(), &["--listen", &address]);
    assert_fails(
        &failed,
        4,
        &format!("cannot listen for clients on {address}"),
    );
}

/// A data directory a broker used, with topic `orders`, after a clean shutdown.
async fn used_data_dir() -> tempfile::TempDir {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("orders", 2, &[]).await;
    assert_eq!(broker.terminate(), Some(0));
    dir
}

#[tokio::test]
async fn a_torn_topic_metadata_file_fails_recovery_with_5() {
    let dir = used_data_dir().await;
    let path = dir.path().join("topics").join("orders.toml");
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let failed = start_failing(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_fails(&failed, 5, &format!("corrupt {}", path.display()));
}

#[tokio::test]
async fn a_damaged_producer_id_reservation_fails_recovery_with_5() {
    let dir = used_data_dir().await;
    let path = dir.path().join("producer-ids");
    std::fs::write(&path, b"SPID").unwrap();
    let failed = start_failing(dir.path(), &["--listen", "127.0.0.1:0"]);
    assert_fails(&failed, 5, "is damaged; it must not be lost");
}
