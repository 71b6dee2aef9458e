//! A batch stamped more than `message_timestamp_after_ms_max` ahead of the broker's clock
//! is refused with `InvalidTimestamp` and appends nothing: one far-future segment would
//! hold back time-based retention of every segment after it. A batch a little ahead (a
//! producer's clock running fast) is taken.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_protocol::ErrorCode;
use strata_protocol::batch::BatchBuilder;
use strata_protocol::messages::Acks;
use strata_tests::{BrokerProcess, Client, bounded, data_dir};

const MINUTE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_millis()).unwrap()
}

/// Two records: one stamped now, the last `ahead_ms` ahead, so only the batch's max
/// timestamp is in the future.
fn batch_ahead(ahead_ms: i64) -> Bytes {
    let now = now_ms();
    let mut builder = BatchBuilder::new();
    builder.push(now, None, Some(b"now"), &[]);
    builder.push(now + ahead_ms, None, Some(b"ahead"), &[]);
    builder.finish()
}

async fn log_end_offset(client: &mut Client) -> u64 {
    client.fetch("t", 0, 0, 0, 0).await.high_watermark
}

#[tokio::test]
async fn a_batch_two_hours_ahead_is_refused_and_one_minute_ahead_is_taken() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("t", 1, &[]).await;
        let first = client.produce("t", 0, Acks::Leader, batch_ahead(0)).await;
        assert_eq!(
            first.error_code,
            ErrorCode::None,
            "{:?}",
            first.error_message
        );
        assert_eq!(log_end_offset(&mut client).await, 2);

        let refused = client
            .produce("t", 0, Acks::All, batch_ahead(120 * MINUTE_MS))
            .await;
        assert_eq!(
            refused.error_code,
            ErrorCode::InvalidTimestamp,
            "{:?}",
            refused.error_message
        );
        let message = refused.error_message.unwrap_or_default();
        assert!(
            message.contains("message_timestamp_after_ms_max"),
            "the error names the limit: {message}"
        );
        assert_eq!(log_end_offset(&mut client).await, 2, "nothing appended");

        let taken = client
            .produce("t", 0, Acks::All, batch_ahead(MINUTE_MS))
            .await;
        assert_eq!(
            taken.error_code,
            ErrorCode::None,
            "{:?}",
            taken.error_message
        );
        assert_eq!(taken.base_offset, 2);
        assert_eq!(log_end_offset(&mut client).await, 4);
    })
    .await;
}

#[tokio::test]
async fn the_limit_is_a_setting() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["message_timestamp_after_ms_max=1000"]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("t", 1, &[]).await;
        let refused = client
            .produce("t", 0, Acks::Leader, batch_ahead(MINUTE_MS))
            .await;
        assert_eq!(refused.error_code, ErrorCode::InvalidTimestamp);
        assert_eq!(log_end_offset(&mut client).await, 0, "nothing appended");
    })
    .await;
}
