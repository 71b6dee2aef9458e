//! The broker's messages name what is wrong in the terms the user typed: a bad value by
//! its key (from a flag, a variable, the file or a client's topic config), an unknown key
//! with the keys as plain words, a data directory another broker has, and an address in
//! use said once.

use std::path::Path;

use strata_protocol::messages::{ConfigEntry, CreatableTopic, CreateTopicsRequest, TopicResult};
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

/// Runs `strata-broker` on `data_dir` with `args` and `environment`, expecting it not to
/// start; returns its exit code and stderr.
fn run_failing(data_dir: &Path, args: &[&str], environment: &[(&str, &str)]) -> (i32, String) {
    let run = broker_failing_to_start(data_dir, args, environment);
    (run.code.expect("an exit code"), run.stderr)
}

/// Environment variables, as name and value.
type Environment<'a> = &'a [(&'a str, &'a str)];

#[test]
fn a_bad_value_is_named_by_its_key_from_a_flag_a_variable_or_the_file() {
    let dir = data_dir();
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, "durability = \"sometimes\"\n").unwrap();
    let file = file.to_str().unwrap();
    let data = dir.path().join("data");
    let cases: [(&[&str], Environment, &str); 3] = [
        (
            &["--listen", "127.0.0.1:0", "--set", "retention_ms=abc"],
            &[],
            "retention_ms: expected an integer, got \"abc\"",
        ),
        (
            &["--listen", "127.0.0.1:0"],
            &[("STRATA_SEGMENT_BYTES", "1GB")],
            "segment_bytes: expected an integer of 0 or more, got \"1GB\"",
        ),
        (
            &["--listen", "127.0.0.1:0", "--config", file],
            &[],
            "durability: expected one of every_batch, interval, never, got \"sometimes\"",
        ),
    ];
    for (args, environment, reason) in cases {
        let (code, stderr) = run_failing(&data, args, environment);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr,
            format!("strata-broker: invalid configuration: {reason}\n")
        );
    }
}

#[test]
fn an_unknown_key_lists_the_keys_as_plain_words() {
    let dir = data_dir();
    let args = ["--listen", "127.0.0.1:0", "--set", "segmnet_bytes=1"];
    let (code, stderr) = run_failing(dir.path(), &args, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with(
            "strata-broker: invalid configuration: unknown key 'segmnet_bytes'; the keys are advertised_listen, "
        ),
        "{stderr}"
    );
    assert!(stderr.contains(", segment_bytes, "), "{stderr}");
    assert!(!stderr.contains(['`', '[', '"']), "{stderr}");
}

/// Creates topic `t` with one config entry; returns the topic's result.
async fn create_with(client: &mut Client, key: &str, value: &str) -> TopicResult {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "t".into(),
            partition_count: 1,
            replication_factor: 1,
            configs: vec![ConfigEntry {
                key: key.into(),
                value: value.into(),
            }],
        }],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let Response::CreateTopics(mut response) = client.call(request).await else {
        panic!("wrong response type")
    };
    response.topics.remove(0)
}

#[tokio::test]
async fn a_clients_topic_config_is_judged_by_its_key() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    let bad_value = create_with(&mut client, "retention_ms", "abc").await;
    assert_eq!(bad_value.error_code, ErrorCode::InvalidConfig);
    assert_eq!(
        bad_value.error_message.as_deref(),
        Some("retention_ms: expected an integer, got \"abc\"")
    );
    let unknown = create_with(&mut client, "retention", "1").await;
    assert_eq!(unknown.error_code, ErrorCode::InvalidConfig);
    assert_eq!(
        unknown.error_message.as_deref(),
        Some(
            "unknown topic config 'retention'; the topic configs are durability, flush_interval_ms, max_message_bytes, min_insync_replicas, retention_bytes, retention_ms, segment_bytes, segment_ms"
        )
    );
}

#[test]
fn a_second_broker_on_a_data_directory_says_another_broker_has_it() {
    let dir = data_dir();
    let _running = BrokerProcess::start(dir.path(), &[]);
    let (code, stderr) = run_failing(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
    assert_eq!(code, 3, "{stderr}");
    let lock = dir.path().join(".lock");
    let expected = format!(
        "strata-broker: the data directory {} is in use by another broker (it holds the lock on {})",
        dir.path().display(),
        lock.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn an_address_in_use_is_reported_once() {
    let dir = data_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_failing(dir.path(), &["--listen", &address], &[]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        stderr.matches("in use").count(),
        1,
        "reported more than once:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "strata-broker: cannot listen for clients on {address}: "
        )),
        "{stderr}"
    );
}
