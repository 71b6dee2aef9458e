//! `strata consume --offset beginning|end|N|-N|@TIMESTAMP_MS` starts every partition it
//! reads there; bad values are argument errors.

use strata_tests::{BrokerProcess, assert_fails, data_dir, strata};

/// Produces `lines` to `partition` of `topic`.
fn produce(at: &str, topic: &str, partition: u32, lines: &[&str]) {
    let input = lines.join("\n") + "\n";
    let partition = partition.to_string();
    let run = strata(
        Some(at),
        &["produce", topic, "--partition", &partition],
        input.as_bytes(),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
}

/// What `consume TOPIC --exit-at-end FLAGS` prints, sorted.
fn consumed(at: &str, topic: &str, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["consume", topic, "--exit-at-end"];
    args.extend_from_slice(flags);
    let run = strata(Some(at), &args, b"");
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (Some(0), ""),
        "{flags:?}: {run:?}"
    );
    let mut lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn each_form_starts_every_partition_read() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();
    let created = strata(
        Some(at),
        &["topic", "create", "log", "--partitions", "2"],
        b"",
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    produce(at, "log", 0, &["a0", "a1", "a2", "a3", "a4"]);
    produce(at, "log", 1, &["b0", "b1", "b2", "b3", "b4"]);

    let everything = ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"];
    assert_eq!(consumed(at, "log", &["--offset", "beginning"]), everything);
    assert_eq!(consumed(at, "log", &["--from-beginning"]), everything);
    assert!(consumed(at, "log", &["--offset", "end"]).is_empty());
    assert_eq!(
        consumed(at, "log", &["--offset", "3"]),
        ["a3", "a4", "b3", "b4"]
    );
    assert_eq!(
        consumed(at, "log", &["--offset", "-2"]),
        ["a3", "a4", "b3", "b4"]
    );
    assert_eq!(consumed(at, "log", &["--offset=-1"]), ["a4", "b4"]);
    // Further back than the log start: from the log start.
    assert_eq!(consumed(at, "log", &["--offset", "-100"]), everything);
    assert_eq!(
        consumed(at, "log", &["--offset", "-1", "--partition", "1"]),
        ["b4"]
    );

    // By time: the first records at or after the newest timestamp so far are the ones
    // written after it.
    let stamps = strata(
        Some(at),
        &[
            "consume",
            "log",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%T\\n",
        ],
        b"",
    );
    let newest: i64 = stamps
        .stdout
        .lines()
        .map(|stamp| stamp.parse::<i64>().expect("a timestamp"))
        .max()
        .expect("ten records");
    // Time moves on between runs; wait until it has passed `newest` by the clock the
    // broker stamps with (the same machine's).
    while now_ms() <= newest {
        std::thread::yield_now();
    }
    produce(at, "log", 0, &["a5"]);
    produce(at, "log", 1, &["b5"]);
    let after = format!("@{}", newest + 1);
    assert_eq!(consumed(at, "log", &["--offset", &after]), ["a5", "b5"]);
    assert_eq!(consumed(at, "log", &["--offset", "@0"]).len(), 12);
    let future = format!("@{}", now_ms() + 3_600_000);
    assert!(consumed(at, "log", &["--offset", &future]).is_empty());
}

#[test]
fn bad_offsets_are_argument_errors() {
    for (value, message) in [
        ("soon", "expected beginning, end, an offset N, -N"),
        ("-x", "got '-x'"),
        ("@yesterday", "got '@yesterday'"),
    ] {
        let run = strata(
            Some("127.0.0.1:1"),
            &["consume", "log", "--offset", value],
            b"",
        );
        assert_fails(&run, 2, message);
    }
    let run = strata(
        Some("127.0.0.1:1"),
        &["consume", "log", "--offset", "3", "--group", "g"],
        b"",
    );
    assert_fails(&run, 2, "cannot be used with");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}
