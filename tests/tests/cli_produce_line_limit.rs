//! `strata produce` takes lines as long as the topic's `max_message_bytes` allows, less
//! the batch and record framing, not a fixed 1,000,000 bytes.

use strata_tests::{BrokerProcess, assert_fails, data_dir, strata};

/// A 61-byte batch header and at most 36 bytes of record framing.
const FRAMING_BYTES: usize = 61 + 36;

#[test]
fn the_line_limit_follows_the_topic() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    for (topic, max_message_bytes) in [("small", "2000"), ("large", "4000000")] {
        let config = format!("max_message_bytes={max_message_bytes}");
        let created = strata(
            at,
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                "1",
                "--config",
                &config,
            ],
            b"",
        );
        assert_eq!(created.code, Some(0), "{created:?}");
    }

    // The longest line that fits the small topic is taken; one byte more is not.
    let longest = 2000 - FRAMING_BYTES;
    let mut line = vec![b's'; longest];
    line.push(b'\n');
    let run = strata(at, &["produce", "small"], &line);
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut too_long = vec![b's'; longest + 1];
    too_long.push(b'\n');
    assert_fails(
        &strata(at, &["produce", "small"], &too_long),
        1,
        &format!(
            "error: line 1 of stdin is longer than {longest} bytes, the most a record of \
             topic 'small' can hold (its max_message_bytes is 2000)\n"
        ),
    );

    // A topic that allows more takes lines past the old fixed limit.
    let big = vec![b'L'; 2_000_000];
    let run = strata(at, &["produce", "large"], &big);
    assert_eq!(run.code, Some(0), "{run:?}");
    for (topic, length) in [("small", longest), ("large", big.len())] {
        let consumed = strata(
            at,
            &["consume", topic, "--from-beginning", "--exit-at-end"],
            b"",
        );
        assert_eq!(consumed.code, Some(0), "{consumed:?}");
        let lines: Vec<usize> = consumed.stdout.lines().map(str::len).collect();
        assert_eq!(lines, [length], "{topic}");
    }
}
