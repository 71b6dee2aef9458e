//! `strata-broker` exits with a distinct code for each way it can fail to start, and says
//! why on stderr: 2 bad configuration, 3 data directory locked or unusable, 4 address in
//! use, 5 recovery failed. The codes are a contract with supervisors and scripts, so they
//! are written here as numbers, not taken from the broker's own enum.

use std::path::Path;

use strata_tests::*;

/// Runs `strata-broker` on `data_dir` with `args`, expecting it not to start.
fn start_failing(data_dir: &Path, args: &[&str]) -> CliRun {
    broker_failing_to_start(data_dir, args, &[])
}

fn assert_fails(failed: &CliRun, code: i32, reason: &str) {
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
