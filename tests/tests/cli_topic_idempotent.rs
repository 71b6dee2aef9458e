//! `topic create --if-not-exists` and `topic delete --if-exists` let a script run twice:
//! the second run does nothing, exits 0 and says so on stderr; without the flags the same
//! second run fails as before.

use strata_tests::{BrokerProcess, assert_fails, data_dir, strata};

const CREATE: [&str; 5] = ["topic", "create", "orders", "--partitions", "2"];

#[test]
fn create_if_not_exists_succeeds_once_the_topic_exists() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let with_flag = |extra: &[&'static str]| {
        let mut args = CREATE.to_vec();
        args.push("--if-not-exists");
        args.extend_from_slice(extra);
        strata(at, &args, b"")
    };

    let first = with_flag(&[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(
        first.stdout,
        "created topic 'orders' with 2 partitions and replication factor 1\n"
    );
    assert!(first.stderr.is_empty(), "{first:?}");

    let again = with_flag(&[]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    assert_eq!(
        again.stderr,
        "note: topic 'orders' already exists; nothing was done\n"
    );
    let json = with_flag(&["--output", "json"]);
    assert_eq!(json.code, Some(0), "{json:?}");
    assert_eq!(
        json.stdout,
        "{\"topic\":\"orders\",\"result\":\"unchanged\"}\n"
    );

    let without_flag = strata(at, &CREATE, b"");
    assert_fails(&without_flag, 1, "topic 'orders' already exists");

    // The flag only excuses an existing topic, not a bad request.
    let bad = strata(
        at,
        &[
            "topic",
            "create",
            "other",
            "--partitions",
            "1",
            "--config",
            "nonsense=1",
            "--if-not-exists",
        ],
        b"",
    );
    assert_eq!(bad.code, Some(1), "{bad:?}");
}

#[test]
fn delete_if_exists_succeeds_once_the_topic_is_gone() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let created = strata(at, &CREATE, b"");
    assert_eq!(created.code, Some(0), "{created:?}");

    let delete = ["topic", "delete", "orders", "--if-exists"];
    let first = strata(at, &delete, b"");
    assert_eq!(first.code, Some(0), "{first:?}");
    assert_eq!(first.stdout, "deleted topic 'orders'\n");
    assert!(first.stderr.is_empty(), "{first:?}");

    let again = strata(at, &delete, b"");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    assert_eq!(
        again.stderr,
        "note: topic 'orders' does not exist; nothing was done\n"
    );

    let without_flag = strata(at, &["topic", "delete", "orders"], b"");
    assert_fails(&without_flag, 1, "topic 'orders' does not exist");
    let listed = strata(at, &["topic", "list"], b"");
    assert_eq!(listed.stdout, "NAME  PARTITIONS\n", "{listed:?}");
}
