//! `strata bench metadata` against a one-node cluster, with tiny counts: one JSON object
//! whose figures are there and ordered (never timing assertions), a text report, and no
//! topic left behind.

use serde_json::Value;
use strata_tests::{BrokerProcess, data_dir, strata};

fn micros(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a whole number of µs"))
}

#[test]
fn bench_metadata_reports_both_parts_and_deletes_its_topics() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = broker.address.as_str();

    let args = ["bench", "metadata", "--partitions", "4", "--topics", "5"];
    let run = strata(Some(at), &[&args[..], &["--output", "json"]].concat(), b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|error| panic!("{error}: {run:?}"));
    assert_eq!(report["mode"], "metadata", "{report}");
    assert_eq!(
        report["brokers"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["partitions"], 4, "{report}");
    assert_eq!(report["topics"], 5, "{report}");
    let created = micros(&report["large_topic_create_us"]);
    let shown = micros(&report["large_topic_shown_us"]);
    assert!(created > 0 && shown >= created, "{report}");
    assert_eq!(
        micros(&report["large_topic_shown_by_broker"][0]["us"]),
        shown,
        "{report}"
    );
    for figure in ["topic_create_us", "topic_shown_us"] {
        let quantiles = &report[figure];
        let (p50, p99, max) = (
            micros(&quantiles["p50"]),
            micros(&quantiles["p99"]),
            micros(&quantiles["max"]),
        );
        assert!(p50 <= p99 && p99 <= max, "{figure}: {report}");
    }

    let text = strata(Some(at), &args, b"");
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.contains("1 topic of 4 partitions") && text.stdout.contains("5 topics"),
        "{text:?}"
    );

    let left = strata(Some(at), &["topic", "list"], b"");
    assert_eq!(left.code, Some(0), "{left:?}");
    assert!(
        !left.stdout.contains("strata-bench-metadata"),
        "the bench deletes its topics: {left:?}"
    );
}
