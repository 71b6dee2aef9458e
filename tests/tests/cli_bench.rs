//! `strata bench` against a real broker: short runs of each mode print one valid JSON
//! object with non-zero throughput (never timing assertions), and the text report.

use serde_json::Value;
use strata_tests::{BrokerProcess, data_dir, strata};

/// A number field of a JSON report.
fn number(report: &Value, key: &str) -> f64 {
    report
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} is not a number in {report}"))
}

/// Runs a bench with `--output json` and returns its one JSON object, checked for the figures
/// every mode reports.
fn bench_json(at: &str, args: &[&str], mode: &str, records: Option<f64>) -> Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let run = strata(Some(at), &all, b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "one JSON line: {run:?}");
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {run:?}"));
    assert_eq!(
        report.get("mode").and_then(Value::as_str),
        Some(mode),
        "{report:?}"
    );
    if let Some(records) = records {
        assert_eq!(number(&report, "records"), records, "{report:?}");
    }
    assert!(number(&report, "records") > 0.0, "{report:?}");
    assert!(number(&report, "bytes") > 0.0, "{report:?}");
    assert!(number(&report, "records_per_second") > 0.0, "{report:?}");
    assert!(number(&report, "megabytes_per_second") > 0.0, "{report:?}");
    assert_eq!(number(&report, "records_failed"), 0.0, "{report:?}");
    report
}

fn assert_latency(report: &Value) {
    let quantiles = [
        "latency_us_p50",
        "latency_us_p90",
        "latency_us_p99",
        "latency_us_p99_9",
        "latency_us_max",
    ];
    let values: Vec<f64> = quantiles.iter().map(|key| number(report, key)).collect();
    assert!(values[0] > 0.0, "{report:?}");
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "quantiles ascend: {report:?}"
    );
}

#[test]
fn bench_produce_consume_and_e2e_print_json_reports() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();

    let produced = bench_json(
        at,
        &[
            "produce",
            "--topic",
            "b",
            "--partitions",
            "2",
            "--messages",
            "3000",
            "--message-bytes",
            "100",
            "--producers",
            "2",
            "--acks",
            "leader",
            "--batch-bytes",
            "16384",
            "--linger-ms",
            "2",
            "--no-idempotence",
        ],
        "produce",
        Some(3000.0),
    );
    assert_eq!(number(&produced, "bytes"), 300_000.0);
    assert_latency(&produced);

    // The topic now holds 3000 records; two consumers read them all.
    let consumed = bench_json(
        at,
        &[
            "consume",
            "--topic",
            "b",
            "--messages",
            "3000",
            "--consumers",
            "2",
        ],
        "consume",
        Some(3000.0),
    );
    assert_eq!(number(&consumed, "bytes"), 300_000.0);
    assert_eq!(consumed.get("latency_us_p50"), None);

    let e2e = bench_json(
        at,
        &[
            "e2e",
            "--topic",
            "b",
            "--messages",
            "2000",
            "--message-bytes",
            "64",
            "--producers",
            "2",
            "--consumers",
            "2",
        ],
        "e2e",
        Some(2000.0),
    );
    assert_latency(&e2e);

    let paced = bench_json(
        at,
        &[
            "produce",
            "--topic",
            "paced",
            "--duration",
            "500ms",
            "--rate",
            "2000",
            "--acks",
            "none",
        ],
        "produce",
        None,
    );
    assert!(
        number(&paced, "records") <= 1_100.0,
        "--rate bounds the count: {paced:?}"
    );
    // Paced runs say how far behind their schedule the sends went; unpaced ones do not.
    let delays = [
        "send_delay_us_p50",
        "send_delay_us_p99",
        "send_delay_us_max",
    ];
    let delays: Vec<f64> = delays.iter().map(|key| number(&paced, key)).collect();
    assert!(delays[0] >= 1.0 && delays.windows(2).all(|pair| pair[0] <= pair[1]));
    assert_eq!(produced.get("send_delay_us_p99"), None);
    // Where the machine's CPU time went (Linux): shares of all cores' time, over the run's
    // window. A run of a few milliseconds may see no tick of the machine's counters and
    // leave them out; the paced run lasts 500 ms.
    assert!(paced.get("cpu_busy_percent").is_some(), "{paced:?}");
    for report in [&produced, &consumed, &e2e, &paced] {
        if report.get("cpu_busy_percent").is_none() {
            continue;
        }
        let shares = [
            "cpu_busy_percent",
            "cpu_steal_percent",
            "cpu_iowait_percent",
        ];
        let total: f64 = shares.iter().map(|key| number(report, key)).sum();
        assert!((0.0..=100.001).contains(&total), "{report:?}");
        assert!(number(report, "bench_cpu_cores") >= 0.0, "{report:?}");
    }
}

#[test]
fn bench_text_report_and_errors() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let run = strata(
        at,
        &[
            "bench",
            "produce",
            "--topic",
            "t",
            "--messages",
            "500",
            "--message-bytes",
            "10",
        ],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .starts_with("bench produce on 't': 500 records, 5000 bytes in "),
        "{run:?}"
    );
    assert!(run.stdout.contains("records/s"), "{run:?}");
    assert!(run.stdout.contains("p99.9"), "{run:?}");
    // Not a terminal: no progress bar on stderr.
    assert!(run.stderr.is_empty(), "{run:?}");

    // Without --messages, consume reads everything the topic holds.
    let everything = bench_json(
        broker.address.as_str(),
        &["consume", "--topic", "t"],
        "consume",
        Some(500.0),
    );
    assert_eq!(number(&everything, "bytes"), 5_000.0);

    let missing = strata(at, &["bench", "consume", "--topic", "nothing-here"], b"");
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert_eq!(
        missing.stderr,
        "error: topic 'nothing-here' does not exist\n"
    );
    let listed = strata(at, &["topic", "list"], b"");
    assert!(!listed.stdout.contains("nothing-here"), "{listed:?}");

    let too_many = strata(
        at,
        &["bench", "consume", "--topic", "t", "--messages", "501"],
        b"",
    );
    assert_eq!(too_many.code, Some(1), "{too_many:?}");
    assert!(
        too_many
            .stderr
            .contains("topic 't' holds 500 records, fewer than --messages 501"),
        "{too_many:?}"
    );
    let mismatch = strata(
        at,
        &[
            "bench",
            "produce",
            "--topic",
            "t",
            "--partitions",
            "9",
            "--messages",
            "1",
        ],
        b"",
    );
    assert_eq!(mismatch.code, Some(1), "{mismatch:?}");
    assert!(
        mismatch
            .stderr
            .contains("topic 't' exists with 3 partitions, not 9"),
        "{mismatch:?}"
    );
    let crowded = strata(
        at,
        &[
            "bench",
            "e2e",
            "--topic",
            "t",
            "--consumers",
            "4",
            "--messages",
            "1",
        ],
        b"",
    );
    assert_eq!(crowded.code, Some(1), "{crowded:?}");
    assert!(
        crowded
            .stderr
            .contains("--consumers 4 exceeds the 3 partitions of topic 't'"),
        "{crowded:?}"
    );
    let unstampable = strata(
        at,
        &["bench", "e2e", "--topic", "short", "--message-bytes", "7"],
        b"",
    );
    assert_eq!(unstampable.code, Some(1), "{unstampable:?}");
    assert!(
        unstampable
            .stderr
            .contains("--message-bytes must be at least 8"),
        "{unstampable:?}"
    );
    let listed = strata(at, &["topic", "list"], b"");
    assert!(!listed.stdout.contains("short"), "{listed:?}");
}
