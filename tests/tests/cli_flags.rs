//! The CLI's argument habits, driven through the real binary: `-b` and
//! `--bootstrap-server` spell `--bootstrap`; `--output` exists only where results are
//! printed, and `bench` asks for JSON that way only; `completion` prints a script for each
//! shell; a bad group id or `--bootstrap` address is an argument error (exit 2) naming the
//! argument; `topic describe` marks the configs a topic overrides and prints numbers as
//! JSON numbers.

use serde_json::{Value, json};
use strata_tests::{BrokerProcess, data_dir, strata};

/// Exit code of an argument error (clap's).
const USAGE: Option<i32> = Some(2);

fn assert_usage_error(args: &[&str], messages: &[&str]) {
    let run = strata(None, args, b"");
    assert_eq!(run.code, USAGE, "{args:?}: {run:?}");
    assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    for message in messages {
        assert!(
            run.stderr.contains(message),
            "expected {message:?}: {run:?}"
        );
    }
}

#[test]
fn bootstrap_has_a_short_flag_and_the_kafka_spelling() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let created = strata(
        None,
        &[
            "-b",
            &broker.address,
            "topic",
            "create",
            "t",
            "--partitions",
            "1",
        ],
        b"",
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    // After the subcommand too: the flag is global.
    let listed = strata(
        None,
        &["topic", "list", "--bootstrap-server", &broker.address],
        b"",
    );
    assert_eq!(listed.stdout, "NAME  PARTITIONS\nt     1\n", "{listed:?}");
}

#[test]
fn output_is_a_flag_of_the_commands_that_print_results_only() {
    assert_usage_error(
        &["--output", "json", "topic", "list"],
        &["unexpected argument '--output'"],
    );
    assert_usage_error(
        &["produce", "t", "--output", "json"],
        &["unexpected argument '--output'"],
    );
    assert_usage_error(
        &["consume", "t", "--output", "json"],
        &["unexpected argument '--output'"],
    );
    // One way to ask bench for JSON: --output json, as everywhere else.
    assert_usage_error(
        &["bench", "produce", "--json"],
        &["unexpected argument '--json'"],
    );
    for args in [
        &["topic", "list", "--help"][..],
        &["group", "describe", "--help"],
        &["bench", "e2e", "--help"],
    ] {
        let help = strata(None, args, b"");
        assert!(
            help.stdout.contains("--output <OUTPUT>"),
            "{args:?}: {help:?}"
        );
    }
    for args in [
        &["produce", "--help"][..],
        &["consume", "--help"],
        &["--help"],
    ] {
        let help = strata(None, args, b"");
        assert_eq!(help.code, Some(0), "{help:?}");
        assert!(!help.stdout.contains("--output"), "{args:?}: {help:?}");
    }
}

#[test]
fn completion_prints_a_script_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _strata"),
        ("zsh", "#compdef strata"),
        ("fish", "complete -c strata"),
    ] {
        let run = strata(None, &["completion", shell], b"");
        assert_eq!(run.code, Some(0), "{shell}: {run:?}");
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        // Subcommands and flags are in it.
        for word in ["reset-offsets", "if-not-exists", "bootstrap-server"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
        assert!(run.stderr.is_empty(), "{shell}: {run:?}");
    }
    assert_usage_error(&["completion", "tcsh"], &["invalid value 'tcsh'"]);
}

#[test]
fn a_bad_group_id_is_an_argument_error_naming_the_argument() {
    let long = "g".repeat(256);
    for args in [
        &["group", "describe", ""][..],
        &["group", "delete", &long],
        &[
            "group",
            "reset-offsets",
            "",
            "--topic",
            "t",
            "--to-earliest",
        ],
    ] {
        assert_usage_error(args, &["for '<GROUP>'", "a group id is 1 to 255 bytes"]);
    }
}

#[test]
fn a_bootstrap_address_without_a_port_or_that_does_not_resolve_is_an_argument_error() {
    assert_usage_error(
        &["--bootstrap", "127.0.0.1", "topic", "list"],
        &["--bootstrap", "'127.0.0.1' has no port", "127.0.0.1:9400"],
    );
    assert_usage_error(
        &["-b", "127.0.0.1:9400,127.0.0.1:x", "topic", "list"],
        &["--bootstrap", "the port 'x' is not a number"],
    );
    // `.invalid` never resolves (RFC 6761), with or without a network.
    assert_usage_error(
        &["--bootstrap", "nohost.invalid:9400", "topic", "list"],
        &[
            "--bootstrap",
            "the host name 'nohost.invalid' did not resolve",
        ],
    );
}

#[test]
fn describe_marks_overridden_configs_and_prints_numbers_in_json() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &["retention_bytes=5000000"]);
    let at = Some(broker.address.as_str());
    let created = strata(
        at,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "1",
            "--config",
            "retention_ms=86400000",
        ],
        b"",
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    let altered = strata(
        at,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "durability=every_batch",
        ],
        b"",
    );
    assert_eq!(altered.code, Some(0), "{altered:?}");

    let described = strata(
        at,
        &["topic", "describe", "orders", "--output", "json"],
        b"",
    );
    assert_eq!(described.code, Some(0), "{described:?}");
    let described: Value = serde_json::from_str(&described.stdout).expect("one JSON object");
    assert_eq!(
        described["overrides"],
        json!({"durability": "every_batch", "retention_ms": 86400000})
    );
    // The broker's own default (retention_bytes) is a default, and numbers are numbers.
    assert_eq!(described["configs"]["retention_bytes"], json!(5000000));
    assert_eq!(described["configs"]["max_message_bytes"], json!(1048576));
    assert_eq!(described["configs"]["retention_ms"], json!(86400000));

    let table = strata(at, &["topic", "describe", "orders"], b"");
    let sources: Vec<(String, String)> = table
        .stdout
        .lines()
        .skip_while(|line| !line.starts_with("CONFIG"))
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_owned(), cells[2].to_owned())
        })
        .collect();
    for (key, source) in &sources {
        let expected = if ["durability", "retention_ms"].contains(&key.as_str()) {
            "topic"
        } else {
            "default"
        };
        assert_eq!(source, expected, "{key}: {}", table.stdout);
    }
    assert_eq!(sources.len(), 8, "{}", table.stdout);
}
