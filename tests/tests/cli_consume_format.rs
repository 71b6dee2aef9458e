//! `strata consume --format`: format strings, one JSON object per record (parsed here
//! with serde_json), how bytes that are not UTF-8 are escaped, and `--print-key` telling
//! a missing key from a key whose text is `null`.

use serde_json::{Value, json};
use strata_tests::{BrokerProcess, assert_fails, data_dir, strata};

/// Keyed, keyless, `null`-keyed, empty-keyed and binary lines, in one partition.
const INPUT: &[u8] = b"k1\tv1\nnull\tnull-keyed\nno key here\n\tempty key\nbin\t\xff\x00\xfe\n";

/// A broker with topic `mixed` holding [`INPUT`], produced with a tab key separator.
fn broker_with_records() -> (tempfile::TempDir, BrokerProcess) {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let at = Some(broker.address.as_str());
    let created = strata(at, &["topic", "create", "mixed", "--partitions", "1"], b"");
    assert_eq!(created.code, Some(0), "{created:?}");
    let produced = strata(at, &["produce", "mixed", "--key-separator", "\t"], INPUT);
    assert_eq!(produced.code, Some(0), "{produced:?}");
    (dir, broker)
}

/// `consume mixed --from-beginning --exit-at-end FLAGS`: its stdout.
fn consume(broker: &BrokerProcess, flags: &[&str]) -> String {
    let mut args = vec!["consume", "mixed", "--from-beginning", "--exit-at-end"];
    args.extend_from_slice(flags);
    let run = strata(Some(&broker.address), &args, b"");
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""), "{run:?}");
    run.stdout
}

#[test]
fn json_prints_one_object_per_record_and_keeps_bytes_exact() {
    let (_dir, broker) = broker_with_records();
    let stdout = consume(&broker, &["--format", "json"]);
    let records: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 5, "{stdout}");
    let keys: Vec<&Value> = records.iter().map(|record| &record["key"]).collect();
    assert_eq!(
        keys,
        [
            &json!("k1"),
            &json!("null"),
            &Value::Null,
            &json!(""),
            &json!("bin")
        ]
    );
    let values: Vec<&Value> = records.iter().map(|record| &record["value"]).collect();
    assert_eq!(
        values,
        [
            &json!("v1"),
            &json!("null-keyed"),
            &json!("no key here"),
            &json!("empty key"),
            // 0xff 0x00 0xfe in standard base64.
            &json!({"base64": "/wD+"}),
        ]
    );
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record["topic"], "mixed");
        assert_eq!(record["partition"], 0);
        assert_eq!(record["offset"], offset);
        assert!(
            record["timestamp"].as_i64().is_some_and(|ms| ms > 0),
            "{record}"
        );
        assert_eq!(record["headers"], json!([]));
    }
}

#[test]
fn format_strings_print_fields_and_escape_bytes_that_are_not_utf8() {
    let (_dir, broker) = broker_with_records();
    let stdout = consume(&broker, &["--format", "%t %p:%o [%k] %v|%h\\n"]);
    assert_eq!(
        stdout,
        "mixed 0:0 [k1] v1|\n\
         mixed 0:1 [null] null-keyed|\n\
         mixed 0:2 [] no key here|\n\
         mixed 0:3 [] empty key|\n\
         mixed 0:4 [bin] \\xff\0\\xfe|\n"
    );
    let stamps = consume(&broker, &["--format", "%T\\t%o\\n"]);
    for (offset, line) in stamps.lines().enumerate() {
        let (stamp, printed_offset) = line.split_once('\t').expect("two fields");
        assert!(stamp.parse::<i64>().is_ok_and(|ms| ms > 0), "{line}");
        assert_eq!(printed_offset, offset.to_string());
    }
}

#[test]
fn print_key_tells_a_missing_key_from_the_text_null() {
    let (_dir, broker) = broker_with_records();
    assert_eq!(
        consume(&broker, &["--print-key"]),
        "k1\tv1\nnull\tnull-keyed\n\tno key here\n\tempty key\nbin\t\\xff\0\\xfe\n"
    );
}

#[test]
fn bad_formats_are_argument_errors_and_help_documents_escaping() {
    for (format, message) in [
        ("%z", "unknown field %z; use %t topic"),
        ("100%", "the format ends in an unfinished field %"),
        ("\\q", "unknown escape \\q"),
    ] {
        let run = strata(
            Some("127.0.0.1:1"),
            &["consume", "t", "--format", format],
            b"",
        );
        assert_fails(&run, 2, message);
    }
    let run = strata(
        Some("127.0.0.1:1"),
        &["consume", "t", "--format", "json", "--print-key"],
        b"",
    );
    assert_fails(&run, 2, "cannot be used with");

    let help = strata(None, &["consume", "--help"], b"");
    assert_eq!(help.code, Some(0), "{help:?}");
    for documented in ["\\xNN", "{\"base64\": \"...\"}", "prints nothing", "%k key"] {
        assert!(
            help.stdout.contains(documented),
            "{documented}: {}",
            help.stdout
        );
    }
}
