//! `strata produce` and `strata consume` against a real broker: lines with and without
//! keys come back identically, partition and offset selection, live tailing, errors.

use strata_tests::{BrokerProcess, CliRun, assert_fails, data_dir, strata};

/// A topic `name` with `partitions` partitions, created through the CLI.
fn create(at: Option<&str>, name: &str, partitions: u32) {
    let partitions = partitions.to_string();
    let run = strata(
        at,
        &["topic", "create", name, "--partitions", &partitions],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
}

/// Everything in `topic` from the log start, until 1 s passes without a record.
fn consume_all(at: Option<&str>, topic: &str, extra: &[&str]) -> CliRun {
    let mut args = vec!["consume", topic, "--from-beginning", "--timeout-ms", "1000"];
    args.extend_from_slice(extra);
    let run = strata(at, &args, b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    run
}

#[test]
fn keyless_lines_come_back_identically_with_every_acks_mode() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    for acks in ["none", "leader", "all"] {
        let topic = format!("lines-{acks}");
        create(at, &topic, 1);
        // An empty line, tabs and separators inside values, non-ASCII text.
        let input = "first\n\nwith\ttab\nkey:like:value\nüñïçødé ✓\nlast\n";
        let produced = strata(at, &["produce", &topic, "--acks", acks], input.as_bytes());
        assert_eq!(produced.code, Some(0), "{produced:?}");
        assert!(
            produced.stdout.is_empty() && produced.stderr.is_empty(),
            "{produced:?}"
        );
        assert_eq!(consume_all(at, &topic, &[]).stdout, input, "acks {acks}");
    }
}

#[test]
fn keyed_lines_come_back_identically_and_keys_pick_partitions() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    create(at, "keyed", 1);
    let input = "k1\tv1\nk2\tv2 with\ttab\nk1\tv3\n";
    let produced = strata(
        at,
        &["produce", "keyed", "--key-separator", "\t"],
        input.as_bytes(),
    );
    assert_eq!(produced.code, Some(0), "{produced:?}");
    assert_eq!(consume_all(at, "keyed", &["--print-key"]).stdout, input);

    // Across partitions order holds per key; a line without the separator has no key.
    create(at, "spread", 4);
    let lines: Vec<String> = (0..40)
        .map(|index| format!("customer-{}::order {index}", index % 7))
        .chain(["no separator here".to_owned()])
        .collect();
    let input = lines.join("\n") + "\n";
    let produced = strata(
        at,
        &["produce", "spread", "--key-separator", "::"],
        input.as_bytes(),
    );
    assert_eq!(produced.code, Some(0), "{produced:?}");
    let consumed = consume_all(at, "spread", &["--print-key", "--print-offset"]).stdout;
    let mut partitions_of_key = std::collections::HashMap::new();
    let mut reassembled = Vec::new();
    for line in consumed.lines() {
        let mut fields = line.splitn(3, '\t');
        let (position, key, value) = (
            fields.next().expect("partition:offset"),
            fields.next().expect("key"),
            fields.next().expect("value"),
        );
        let partition = position.split(':').next().expect("partition");
        let first = partitions_of_key
            .entry(key.to_owned())
            .or_insert(partition.to_owned());
        assert_eq!(first, partition, "key {key} went to two partitions");
        // A record without a key prints an empty key.
        if key.is_empty() {
            reassembled.push(value.to_owned());
        } else {
            reassembled.push(format!("{key}::{value}"));
        }
    }
    let mut expected: Vec<&str> = lines.iter().map(String::as_str).collect();
    expected.sort_unstable();
    reassembled.sort_unstable();
    assert_eq!(reassembled, expected);
    assert!(partitions_of_key.len() > 1, "{consumed}");
}

#[test]
fn partition_offset_and_max_messages_select_records() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    create(at, "chosen", 3);
    let input: String = (0..10).map(|index| format!("r{index}\n")).collect();
    let produced = strata(
        at,
        &["produce", "chosen", "--partition", "2"],
        input.as_bytes(),
    );
    assert_eq!(produced.code, Some(0), "{produced:?}");

    assert_eq!(
        consume_all(at, "chosen", &["--partition", "2"]).stdout,
        input
    );
    assert_eq!(consume_all(at, "chosen", &["--partition", "0"]).stdout, "");

    // --max-messages ends the run by itself: no --timeout-ms needed.
    let from_offset = strata(
        at,
        &[
            "consume",
            "chosen",
            "--partition",
            "2",
            "--offset",
            "3",
            "--max-messages",
            "2",
            "--print-offset",
        ],
        b"",
    );
    assert_eq!(from_offset.code, Some(0), "{from_offset:?}");
    assert_eq!(from_offset.stdout, "2:3\tr3\n2:4\tr4\n");

    let stamped = consume_all(
        at,
        "chosen",
        &[
            "--partition",
            "2",
            "--print-timestamp",
            "--max-messages",
            "1",
        ],
    );
    let (timestamp, value) = stamped
        .stdout
        .trim_end()
        .split_once('\t')
        .expect("two fields");
    let timestamp: i64 = timestamp.parse().expect("numeric timestamp");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    assert!(
        (now_ms - 600_000..=now_ms).contains(&timestamp),
        "{timestamp} vs {now_ms}"
    );
    assert_eq!(value, "r0");
}

#[test]
fn without_from_beginning_only_new_records_are_printed() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.clone();
    create(Some(&at), "live", 1);
    assert_eq!(
        strata(Some(&at), &["produce", "live"], b"old\n").code,
        Some(0)
    );

    let idle = strata(Some(&at), &["consume", "live", "--timeout-ms", "300"], b"");
    assert_eq!((idle.code, idle.stdout.as_str()), (Some(0), ""), "{idle:?}");

    // The consumer cannot tell us when it is positioned, so keep producing until it
    // prints one new record and exits.
    let consumer = {
        let at = at.clone();
        std::thread::spawn(move || {
            strata(
                Some(&at),
                &[
                    "consume",
                    "live",
                    "--max-messages",
                    "1",
                    "--timeout-ms",
                    "15000",
                ],
                b"",
            )
        })
    };
    while !consumer.is_finished() {
        assert_eq!(
            strata(Some(&at), &["produce", "live"], b"new\n").code,
            Some(0)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let run = consumer.join().expect("consumer thread");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "new\n"),
        "{run:?}"
    );
}

#[test]
fn console_errors_are_actionable() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    create(at, "small", 2);
    let missing = "error: topic 'missing' does not exist\n";
    assert_fails(&strata(at, &["produce", "missing"], b"x\n"), 1, missing);
    assert_fails(
        &strata(at, &["consume", "missing", "--timeout-ms", "100"], b""),
        1,
        missing,
    );
    let no_partition = "error: topic 'small' has 2 partitions; there is no partition 5\n";
    assert_fails(
        &strata(at, &["produce", "small", "--partition", "5"], b"x\n"),
        1,
        no_partition,
    );
    assert_fails(
        &strata(
            at,
            &[
                "consume",
                "small",
                "--partition",
                "5",
                "--timeout-ms",
                "100",
            ],
            b"",
        ),
        1,
        no_partition,
    );
    let beyond = strata(
        at,
        &[
            "consume",
            "small",
            "--partition",
            "1",
            "--offset",
            "7",
            "--timeout-ms",
            "5000",
        ],
        b"",
    );
    assert_fails(
        &beyond,
        1,
        "error: offset 7 is out of range for partition 1 of topic 'small'; \
         `strata topic describe small` shows its log start offset and high watermark\n",
    );
    let long_line = vec![b'x'; 2_000_000];
    assert_fails(
        &strata(at, &["produce", "small"], &long_line),
        1,
        "line 1 of stdin is longer than",
    );
    // Nothing was written by the failed runs.
    assert_eq!(consume_all(at, "small", &[]).stdout, "");
}
