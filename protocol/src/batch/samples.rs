//! Batches for the tests: random records, a builder run that checks its sizes as it
//! goes, and a small fixed batch.

use bytes::Bytes;
use proptest::prelude::*;

use super::{BatchBuilder, Header};

#[derive(Debug, Clone)]
pub(super) struct TestRecord {
    pub(super) timestamp: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(Vec::new())),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        proptest::collection::vec(any::<u8>(), 1000..5000).prop_map(Some),
    ]
}

pub(super) fn record_strategy() -> impl Strategy<Value = TestRecord> {
    (
        -1_000_000i64..4_000_000_000_000,
        bytes_strategy(),
        bytes_strategy(),
        proptest::collection::vec(("[a-z\u{e9}]{0,8}", bytes_strategy()), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| TestRecord {
            timestamp,
            key,
            value,
            headers,
        })
}

pub(super) fn build(records: &[TestRecord]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for record in records {
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|(key, value)| Header {
                key,
                value: value.as_deref(),
            })
            .collect();
        let before = builder.len();
        let expected = builder.record_len(
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
        let (timestamp, key, value) = (
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
        );
        if builder.record_count().is_multiple_of(2) {
            builder.push(timestamp, key, value, &headers);
        } else {
            let just_short = before + expected - 1;
            assert!(!builder.push_within(just_short, timestamp, key, value, &headers));
            assert_eq!(
                builder.len(),
                before,
                "a record that does not fit adds nothing"
            );
            assert!(builder.push_within(before + expected, timestamp, key, value, &headers));
        }
        assert_eq!(builder.len() - before, expected);
    }
    builder.finish()
}

pub(super) fn sample() -> Vec<u8> {
    build(&[
        TestRecord {
            timestamp: 10,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
        },
        TestRecord {
            timestamp: 12,
            key: None,
            value: Some(b"w".to_vec()),
            headers: vec![],
        },
    ])
    .to_vec()
}
