//! While the broker cannot be reached, `strata consume` says so on stderr within 2 s and
//! keeps saying it while it retries: at the start, and when the broker goes away.

use std::time::Duration;

use strata_tests::child::StrataChild;
use strata_tests::{BrokerProcess, WAIT, data_dir, strata, unreachable_address};

/// The first message's deadline, from the start or from the broker's death: the 2 s
/// the CLI promises, plus room for a machine busy with other tests.
const SAID_WITHIN: Duration = Duration::from_secs(5);
/// The repeats' deadline: they come every few seconds.
const REPEATED_WITHIN: Duration = Duration::from_secs(8);

#[test]
fn an_unreachable_broker_is_reported_and_retried() {
    let address = unreachable_address();
    let consumer = StrataChild::spawn(&address, &["consume", "orders"]);
    let expected = format!("cannot reach broker at {address}: connection refused; retrying");
    let first = consumer.stderr_line_containing("cannot reach", SAID_WITHIN);
    assert_eq!(first, expected);
    let again = consumer.stderr_line_containing("cannot reach", REPEATED_WITHIN);
    assert_eq!(again, expected);
}

#[test]
fn a_broker_that_goes_away_is_reported() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.clone();
    for args in [
        &["topic", "create", "orders", "--partitions", "1"][..],
        &["produce", "orders"],
    ] {
        let run = strata(Some(&at), args, b"first\n");
        assert_eq!(run.code, Some(0), "{run:?}");
    }
    let consumer = StrataChild::spawn(&at, &["consume", "orders", "--from-beginning"]);
    assert_eq!(consumer.stdout_line(WAIT), "first");

    broker.kill_9();
    let line = consumer.stderr_line_containing(&format!("broker at {at}"), SAID_WITHIN);
    assert!(line.ends_with("; retrying"), "{line}");
    consumer.stderr_line_containing("; retrying", REPEATED_WITHIN);
}
