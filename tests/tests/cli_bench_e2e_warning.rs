//! `bench e2e` without `--rate` warns on stderr, before it runs, that its latencies
//! measure queueing rather than latency, and says how much it will write; a paced run
//! does not warn.

use strata_tests::{BrokerProcess, data_dir, strata};

#[test]
fn unpaced_e2e_warns_about_queueing_and_the_bytes_it_writes() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let e2e = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "e2e",
            "--topic",
            "t",
            "--partitions",
            "1",
            "--messages",
            "2000",
            "--message-bytes",
            "1000",
        ];
        args.extend_from_slice(extra);
        strata(at, &args, b"")
    };

    let unpaced = e2e(&[]);
    assert_eq!(unpaced.code, Some(0), "{unpaced:?}");
    assert!(
        unpaced
            .stderr
            .starts_with("warning: without --rate, bench e2e sends as fast as it can"),
        "{unpaced:?}"
    );
    assert!(unpaced.stderr.contains("measure queueing"), "{unpaced:?}");
    assert!(
        unpaced
            .stderr
            .contains("writes about 2.0 MB (2000 records of 1000 bytes) to topic 't'"),
        "{unpaced:?}"
    );
    assert!(
        unpaced.stdout.starts_with("bench e2e on 't'"),
        "{unpaced:?}"
    );

    let paced = e2e(&["--rate", "20000"]);
    assert_eq!(paced.code, Some(0), "{paced:?}");
    // Not a terminal: no progress bar either, so nothing at all on stderr.
    assert!(paced.stderr.is_empty(), "{paced:?}");
}
