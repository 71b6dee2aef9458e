//! `strata consume --exit-at-end` stops once every partition it reads is printed up to
//! its end, with and without a group, and at once on an empty topic.

use strata_tests::{BrokerProcess, data_dir, strata};

/// Creates `topic` with `partitions` partitions and writes `per_partition` lines to each,
/// `p<partition>-<index>`; returns every line written, sorted.
fn topic_with_records(at: &str, topic: &str, partitions: u32, per_partition: u32) -> Vec<String> {
    let count = partitions.to_string();
    let created = strata(
        Some(at),
        &["topic", "create", topic, "--partitions", &count],
        b"",
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    let mut all = Vec::new();
    for partition in (0..partitions).filter(|_| per_partition > 0) {
        let lines: Vec<String> = (0..per_partition)
            .map(|index| format!("p{partition}-{index}"))
            .collect();
        let input = lines.join("\n") + "\n";
        let partition = partition.to_string();
        let produced = strata(
            Some(at),
            &["produce", topic, "--partition", &partition],
            input.as_bytes(),
        );
        assert_eq!(produced.code, Some(0), "{produced:?}");
        all.extend(lines);
    }
    all.sort();
    all
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn every_partition_is_printed_to_its_end_then_the_run_exits() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();
    let written = topic_with_records(at, "three", 3, 20);

    let run = strata(
        Some(at),
        &["consume", "three", "--from-beginning", "--exit-at-end"],
        b"",
    );
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""), "{run:?}");
    assert_eq!(sorted_lines(&run.stdout), written);

    // From the end there is nothing left to print.
    let run = strata(Some(at), &["consume", "three", "--exit-at-end"], b"");
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""), "{run:?}");
}

#[test]
fn an_empty_topic_exits_at_once() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();
    topic_with_records(at, "empty", 2, 0);
    for flags in [
        &["--exit-at-end"][..],
        &["--exit-at-end", "--from-beginning"],
        &["--exit-at-end", "--group", "readers", "--from-beginning"],
    ] {
        let mut args = vec!["consume", "empty"];
        args.extend_from_slice(flags);
        let run = strata(Some(at), &args, b"");
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(0), "", ""),
            "{flags:?}"
        );
    }
}

#[test]
fn a_group_run_exits_at_the_end_and_commits_what_it_printed() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();
    let written = topic_with_records(at, "grouped", 3, 10);
    let group_run = || {
        strata(
            Some(at),
            &[
                "consume",
                "grouped",
                "--group",
                "billing",
                "--from-beginning",
                "--exit-at-end",
            ],
            b"",
        )
    };

    let first = group_run();
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(sorted_lines(&first.stdout), written);

    // The group committed everything: a second run has nothing left and exits.
    let second = group_run();
    assert_eq!(
        (second.code, second.stdout.as_str()),
        (Some(0), ""),
        "{second:?}"
    );
}
