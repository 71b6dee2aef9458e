//! A `strata consume` whose topic is deleted under it exits with an error naming the
//! topic, with and without a group.

use std::time::Duration;

use strata_tests::child::StrataChild;
use strata_tests::{BrokerProcess, WAIT, data_dir, strata};

fn deleted_while_reading(flags: &[&str]) {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();
    for args in [
        &["topic", "create", "doomed", "--partitions", "2"][..],
        &["produce", "doomed"],
    ] {
        let run = strata(Some(at), args, b"first\n");
        assert_eq!(run.code, Some(0), "{run:?}");
    }
    let mut args = vec!["consume", "doomed", "--from-beginning"];
    args.extend_from_slice(flags);
    let consumer = StrataChild::spawn(at, &args);
    // It is reading once it printed the record.
    assert_eq!(consumer.stdout_line(WAIT), "first");

    let deleted = strata(Some(at), &["topic", "delete", "doomed"], b"");
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    let line = consumer.stderr_line_containing("doomed", Duration::from_secs(10));
    assert_eq!(line, "error: topic 'doomed' was deleted", "{flags:?}");
    let (code, _) = consumer.exit();
    assert_eq!(code, Some(1), "{flags:?}");
}

#[test]
fn a_consumer_of_a_deleted_topic_exits_with_an_error() {
    deleted_while_reading(&[]);
}

#[test]
fn a_group_consumer_of_a_deleted_topic_exits_with_an_error() {
    deleted_while_reading(&["--group", "readers"]);
}
