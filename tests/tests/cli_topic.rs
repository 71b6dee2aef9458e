//! `strata topic ...` against a real broker: create, list, describe, alter and delete,
//! each on a broker of its own, JSON output, and every error a person can hit, with its
//! message and exit code.

use std::process::{Command, Stdio};

use strata_tests::{BrokerProcess, assert_fails, binary, data_dir, strata, unreachable_address};

/// A broker of its own with topic `orders` (3 partitions, kept 24 h), after its data
/// directory, so that the broker is stopped before the directory goes.
fn broker_with_orders() -> (tempfile::TempDir, BrokerProcess) {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let created = strata(at, &ORDERS_CREATE, b"");
    assert_eq!(created.code, Some(0), "{created:?}");
    (dir, broker)
}

const ORDERS_CREATE: [&str; 9] = [
    "topic",
    "create",
    "orders",
    "--partitions",
    "3",
    "--replication-factor",
    "1",
    "--config",
    "retention_ms=86400000",
];

fn create_audit(at: Option<&str>) {
    let created = strata(at, &["topic", "create", "audit", "--partitions", "1"], b"");
    assert_eq!(created.code, Some(0), "{created:?}");
}

#[test]
fn create_reports_the_topic_it_made() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let created = strata(Some(&broker.address), &ORDERS_CREATE, b"");
    assert_eq!(created.code, Some(0), "{created:?}");
    assert_eq!(
        created.stdout,
        "created topic 'orders' with 3 partitions and replication factor 1\n"
    );
}

#[test]
fn list_prints_topics_by_name_as_a_table_and_as_json() {
    let (_dir, broker) = broker_with_orders();
    let at = Some(broker.address.as_str());
    create_audit(at);
    let listed = strata(at, &["topic", "list"], b"");
    assert_eq!(
        listed.stdout, "NAME    PARTITIONS\naudit   1\norders  3\n",
        "{listed:?}"
    );
    let listed = strata(at, &["topic", "list", "--output", "json"], b"");
    assert_eq!(
        listed.stdout,
        "[{\"name\":\"audit\",\"partitions\":1},{\"name\":\"orders\",\"partitions\":3}]\n"
    );
}

#[test]
fn describe_shows_partition_offsets_sizes_and_configs_as_json_and_as_a_table() {
    let (_dir, broker) = broker_with_orders();
    let at = Some(broker.address.as_str());
    let produced = strata(at, &["produce", "orders", "--partition", "1"], b"a\nb\n");
    assert_eq!(produced.code, Some(0), "{produced:?}");
    let described = strata(
        at,
        &["topic", "describe", "orders", "--output", "json"],
        b"",
    );
    // Partition 1 holds one batch of two keyless records: 61 header bytes + 2 x 8.
    let partition = |index: u32, end: u32, size: u32| {
        format!(
            "{{\"partition\":{index},\"leader\":0,\"leader_epoch\":0,\"replicas\":[0],\
             \"in_sync_replicas\":[0],\"log_start_offset\":0,\"high_watermark\":{end},\
             \"log_end_offset\":{end},\"size_bytes\":{size}}}"
        )
    };
    let configs = "{\"durability\":\"never\",\"flush_interval_ms\":1000,\
                   \"max_message_bytes\":1048576,\"min_insync_replicas\":2,\
                   \"retention_bytes\":-1,\
                   \"retention_ms\":86400000,\"segment_bytes\":1073741824,\
                   \"segment_ms\":604800000}";
    assert_eq!(
        described.stdout,
        format!(
            "{{\"name\":\"orders\",\"configs\":{configs},\
             \"overrides\":{{\"retention_ms\":86400000}},\"partitions\":[{},{},{}]}}\n",
            partition(0, 0, 0),
            partition(1, 2, 77),
            partition(2, 0, 0)
        ),
        "{described:?}"
    );
    let described = strata(at, &["topic", "describe", "orders"], b"");
    let lines: Vec<&str> = described.stdout.lines().collect();
    assert_eq!(lines[0], "topic 'orders' (3 partitions)");
    assert!(lines[1].starts_with("PARTITION  LEADER"), "{described:?}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["1", "0", "0", "0", "0", "0", "2", "2", "77"]
    );
    assert!(
        lines.contains(&"retention_ms         86400000    topic"),
        "configs are listed: {described:?}"
    );
}

#[test]
fn alter_adds_partitions_and_sets_configs() {
    let (_dir, broker) = broker_with_orders();
    let at = Some(broker.address.as_str());
    let altered = strata(at, &["topic", "alter", "orders", "--partitions", "5"], b"");
    assert_eq!(altered.code, Some(0), "{altered:?}");
    assert_eq!(
        altered.stdout,
        "altered topic 'orders' now has 5 partitions\n"
    );
    let altered = strata(
        at,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "retention_ms=1000",
            "--config",
            "durability=every_batch",
        ],
        b"",
    );
    assert_eq!(
        altered.stdout, "altered topic 'orders' set retention_ms, durability\n",
        "{altered:?}"
    );
    let described = strata(at, &["topic", "describe", "orders"], b"");
    let lines: Vec<&str> = described.stdout.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.starts_with(char::is_numeric))
            .count(),
        5,
        "{described:?}"
    );
    let config = |key: &str| {
        lines
            .iter()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&key))
    };
    assert_eq!(
        config("retention_ms"),
        Some(vec!["retention_ms", "1000", "topic"])
    );
    assert_eq!(
        config("durability"),
        Some(vec!["durability", "every_batch", "topic"])
    );
}

#[test]
fn alter_refuses_a_bad_config_value_and_needs_something_to_change() {
    let (_dir, broker) = broker_with_orders();
    let at = Some(broker.address.as_str());
    let rejected = strata(
        at,
        &["topic", "alter", "orders", "--config", "retention_ms=soon"],
        b"",
    );
    assert_fails(&rejected, 1, "InvalidConfig");
    let nothing = strata(at, &["topic", "alter", "orders"], b"");
    assert_eq!(
        nothing.code,
        Some(2),
        "alter needs --partitions or --config: {nothing:?}"
    );
}

#[test]
fn delete_removes_only_the_topic_named() {
    let (_dir, broker) = broker_with_orders();
    let at = Some(broker.address.as_str());
    create_audit(at);
    let deleted = strata(at, &["topic", "delete", "orders", "--output", "json"], b"");
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    assert_eq!(
        deleted.stdout,
        "{\"topic\":\"orders\",\"result\":\"deleted\"}\n"
    );
    let listed = strata(at, &["topic", "list"], b"");
    assert_eq!(listed.stdout, "NAME   PARTITIONS\naudit  1\n");
}

#[test]
fn bootstrap_comes_from_the_environment() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut command = Command::new(binary("strata"));
    let output = command
        .args(["topic", "create", "from-env", "--partitions", "1"])
        .env("STRATA_BOOTSTRAP", &broker.address)
        .stdin(Stdio::null())
        .output()
        .expect("run strata");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let listed = strata(Some(&broker.address), &["topic", "list"], b"");
    assert!(listed.stdout.contains("from-env"), "{listed:?}");
}

#[test]
fn runtime_errors_name_the_topic_and_exit_1() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    assert_eq!(
        strata(at, &["topic", "create", "orders", "--partitions", "2"], b"").code,
        Some(0)
    );

    let again = strata(at, &["topic", "create", "orders", "--partitions", "2"], b"");
    assert_fails(&again, 1, "error: topic 'orders' already exists\n");
    for args in [
        &["topic", "describe", "missing"][..],
        &["topic", "delete", "missing"],
        &["topic", "alter", "missing", "--partitions", "4"],
    ] {
        assert_fails(
            &strata(at, args, b""),
            1,
            "error: topic 'missing' does not exist\n",
        );
    }
    let shrink = strata(at, &["topic", "alter", "orders", "--partitions", "1"], b"");
    assert_fails(&shrink, 1, "(InvalidPartitions)");
    assert!(shrink.stderr.contains("orders"), "{shrink:?}");
    let bad_name = strata(at, &["topic", "create", "a/b", "--partitions", "1"], b"");
    assert_fails(&bad_name, 1, "(InvalidTopic)");
    let bad_config = strata(
        at,
        &[
            "topic",
            "create",
            "c",
            "--partitions",
            "1",
            "--config",
            "no_such_key=1",
        ],
        b"",
    );
    assert_fails(&bad_config, 1, "(InvalidConfig)");
}

/// `produce` and `consume` keep retrying instead, saying so: cli_*_broker_down.rs.
#[test]
fn an_unreachable_broker_is_named() {
    let address = unreachable_address();
    for args in [
        &["topic", "list"][..],
        &["topic", "create", "orders", "--partitions", "1"],
    ] {
        let run = strata(Some(&address), args, b"x\n");
        assert_fails(
            &run,
            1,
            &format!("error: cannot reach broker at {address}: connection refused\n"),
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["topic", "create", "orders"][..],
        &["topic", "create", "orders", "--partitions", "0"],
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "1",
            "--config",
            "novalue",
        ],
        &["topic", "alter", "orders"],
        &["consume", "orders", "--offset", "three"],
        &["consume", "orders", "--group", ""],
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--offset",
            "3",
            "--partition",
            "0",
        ],
        &["produce", "orders", "--acks", "some"],
        &["bench", "produce", "--messages", "10", "--duration", "1s"],
        &["bench", "produce", "--duration", "1h"],
        &["topic", "list", "--output", "yaml"],
        &["group", "describe"],
        &["group", "reset-offsets", "g", "--topic", "orders"],
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
            "--to-latest",
        ],
        &["consume", "orders", "--group", "g", "--offset", "3"],
        &["consume", "orders", "--instance-id", "i"],
        &["cluster", "status", "--output", "yaml"],
    ] {
        let run = strata(Some("127.0.0.1:9"), args, b"");
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
    }
}
