//! While the broker cannot be reached, `strata produce` says so on stderr within 2 s and
//! keeps saying it; when it gives up it says how many lines were delivered and which
//! line was the first that was not.

use std::time::Duration;

use strata_tests::child::StrataChild;
use strata_tests::{BrokerProcess, WAIT, data_dir, strata, unreachable_address};

/// The first message's deadline, from the start or from the broker's death: the 2 s
/// the CLI promises, plus room for a machine busy with other tests.
const SAID_WITHIN: Duration = Duration::from_secs(5);

/// The repeat's deadline after the first message: the CLI says it again after 3 s, at its
/// next check (every 1 s), plus the same room.
const SAID_AGAIN_WITHIN: Duration = Duration::from_secs(6);

#[test]
fn an_unreachable_broker_is_reported_until_produce_gives_up() {
    let address = unreachable_address();
    let mut producer = StrataChild::spawn(
        &address,
        &["produce", "orders", "--delivery-timeout-ms", "8000"],
    );
    producer.write(b"one\n");
    let expected = format!("cannot reach broker at {address}: connection refused; retrying");
    assert_eq!(
        producer.stderr_line_containing("cannot reach", SAID_WITHIN),
        expected
    );
    // Said again every 3 s, checked every 1 s: long before the 8 s delivery timeout.
    assert_eq!(
        producer.stderr_line_containing("cannot reach", SAID_AGAIN_WITHIN),
        expected
    );
    let (code, rest) = producer.exit();
    assert_eq!(code, Some(1), "{rest}");
    assert!(
        rest.ends_with(&format!(
            "error: cannot reach broker at {address}: connection refused"
        )),
        "{rest}"
    );
}

#[test]
fn a_broker_that_goes_away_is_reported_and_the_undelivered_lines_are_counted() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.clone();
    let created = strata(
        Some(&at),
        &["topic", "create", "orders", "--partitions", "1"],
        b"",
    );
    assert_eq!(created.code, Some(0), "{created:?}");
    let mut producer =
        StrataChild::spawn(&at, &["produce", "orders", "--delivery-timeout-ms", "3000"]);
    producer.write(b"one\ntwo\n");
    // Both lines are stored once a reader finds them.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let read = strata(
            Some(&at),
            &["consume", "orders", "--from-beginning", "--exit-at-end"],
            b"",
        );
        if read.stdout == "one\ntwo\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{read:?}");
    }

    broker.kill_9();
    producer.write(b"three\n");
    producer.close_stdin();
    let line = producer.stderr_line_containing(&format!("broker at {at}"), SAID_WITHIN);
    assert!(line.ends_with("; retrying"), "{line}");
    let (code, rest) = producer.exit();
    assert_eq!(code, Some(1), "{rest}");
    let last = rest.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{rest}");
    assert!(
        last.ends_with(
            "; gave up: 2 of 3 lines delivered, the first not delivered is line 3: \"three\""
        ),
        "{rest}"
    );
}
