//! A waiting request's reply is sent even when the replies queued behind it hold the whole
//! `response_memory_bytes_max`: they can leave only after it, so it never waits for the
//! budget. A long-poll fetch parks, DescribeTopics requests pipelined behind it fill the
//! budget (the last waits for it in the in-order loop), and once a produce wakes the fetch,
//! every reply arrives in order.

use strata_protocol::frame;
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, ErrorCode, Request, Response};
use strata_tests::*;

/// The smallest budget the broker takes, one frame; a description of [`WIDE`] fills
/// almost half of it.
const FRAME_BYTES_MAX: usize = 64 << 10;
const WIDE: &str = "wide";
/// Partitions of [`WIDE`]: its description is about 31 KB.
const PARTITIONS: u32 = 480;
const DESCRIPTIONS: usize = 4;

#[tokio::test]
async fn a_waiting_reply_is_sent_while_replies_queued_behind_it_hold_the_budget() {
    bounded(async {
        let dir = data_dir();
        let settings = [
            format!("frame_bytes_max={FRAME_BYTES_MAX}"),
            format!("response_memory_bytes_max={FRAME_BYTES_MAX}"),
            "max_message_bytes=16384".to_owned(),
        ];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let broker = BrokerProcess::start(dir.path(), &settings);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("events", 1, &[]).await;
        admin.create_topic(WIDE, PARTITIONS, &[]).await;
        let describe = || {
            Request::DescribeTopics(DescribeTopicsRequest {
                names: Some(vec![WIDE.into()]),
            })
        };
        let reply_bytes = frame::response_payload_bytes(&admin.call(describe()).await, 0);
        assert!(
            2 * reply_bytes <= FRAME_BYTES_MAX && 3 * reply_bytes > FRAME_BYTES_MAX,
            "{reply_bytes}"
        );
        let mut client = Client::connect(&broker.address).await;
        let fetch = client
            .send(Request::Fetch(FetchRequest {
                max_wait_ms: 15_000,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![FetchTopic {
                    name: "events".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        current_leader_epoch: NO_EPOCH,
                        fetch_offset: 0,
                        last_fetched_epoch: NO_EPOCH,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
            }))
            .await;
        wait_for_metrics(&broker.metrics_address, &["strata_fetches_waiting 1"]).await;
        for _ in 0..DESCRIPTIONS {
            client.send(describe()).await;
        }
        // Two descriptions hold the budget; the in-order loop waits with the third.
        let held = format!("strata_response_memory_bytes {}", 2 * reply_bytes);
        wait_for_metrics(&broker.metrics_address, &[&held]).await;
        // Its append wakes the fetch; its reply waits for the budget behind the third
        // description, so it is read last.
        let wake = ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 10_000,
            topics: vec![ProduceTopic {
                name: "events".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: batch_of("wake", 1).into(),
                }],
            }],
        };
        admin.send(wake.into()).await;
        let (correlation_id, result) = client.receive(ApiKey::Fetch).await;
        assert_eq!(correlation_id, fetch);
        let Ok(Response::Fetch(fetched)) = result else {
            panic!("not a fetch response: {result:?}")
        };
        let records = decode_records(&fetched.topics[0].partitions[0].records);
        assert_eq!(values(&records), ["wake-0"]);
        for index in 0..DESCRIPTIONS {
            let (correlation_id, result) = client.receive(ApiKey::DescribeTopics).await;
            assert_eq!(correlation_id, fetch + 1 + index as u32);
            let Ok(Response::DescribeTopics(response)) = result else {
                panic!("not a describe topics response: {result:?}")
            };
            assert_eq!(response.topics[0].partitions.len(), PARTITIONS as usize);
        }
        let (_, produced) = admin.receive(ApiKey::Produce).await;
        let Ok(Response::Produce(produced)) = produced else {
            panic!("not a produce response: {produced:?}")
        };
        assert_eq!(produced.topics[0].partitions[0].error_code, ErrorCode::None);
        wait_for_metrics(&broker.metrics_address, &["strata_response_memory_bytes 0"]).await;
    })
    .await;
}
