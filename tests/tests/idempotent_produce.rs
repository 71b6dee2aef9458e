//! Idempotent produce against a real broker: InitProducerId hands out ids that survive a
//! restart, the leader writes a producer's batches in sequence order only, answers a
//! retry with the original offsets (also after kill -9 and a restart), and fences an
//! older epoch.

use bytes::Bytes;
use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

async fn init(client: &mut Client, producer_id: i64, producer_epoch: i16) -> (i64, i16) {
    let Response::InitProducerId(response) = client
        .call(InitProducerIdRequest {
            producer_id,
            producer_epoch,
        })
        .await
    else {
        panic!("wrong response type")
    };
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "{:?}",
        response.error_message
    );
    (response.producer_id, response.producer_epoch)
}

/// `count` records `"{prefix}-{index}"` numbered as an idempotent producer's batch.
fn numbered(prefix: &str, count: usize, id: (i64, i16), sequence: i32) -> Bytes {
    idempotent_batch_of(prefix, count, id, sequence)
}

async fn produce(client: &mut Client, batch: Bytes) -> ProducePartitionResponse {
    client.produce("idem", 0, Acks::Leader, batch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_with_the_original_offsets_and_gaps_are_refused() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let (bumped, other, given) = bounded(async {
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("idem", 1, &[]).await;
        let id = init(&mut client, -1, -1).await;
        let other = init(&mut client, -1, -1).await;
        assert_ne!(id.0, other.0, "every producer gets its own id");
        assert_eq!((id.1, other.1), (0, 0));

        let first = produce(&mut client, numbered("a", 3, id, 0)).await;
        assert_eq!((first.error_code, first.base_offset), (ErrorCode::None, 0));
        let second = produce(&mut client, numbered("b", 2, id, 3)).await;
        assert_eq!(second.base_offset, 3);
        // A retry of either batch is not written again and gets its own offsets back.
        let retry = produce(&mut client, numbered("a", 3, id, 0)).await;
        assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 0));
        let retry = produce(&mut client, numbered("b", 2, id, 3)).await;
        assert_eq!(retry.base_offset, 3);
        // A gap (sequence 5 is next) is refused and writes nothing.
        let gap = produce(&mut client, numbered("c", 1, id, 6)).await;
        assert_eq!(gap.error_code, ErrorCode::OutOfOrderSequence);
        // Another producer's sequences are its own.
        let interleaved = produce(&mut client, numbered("x", 1, other, 0)).await;
        assert_eq!(interleaved.base_offset, 5);
        let plain = produce(&mut client, batch_of("plain", 1)).await;
        assert_eq!(plain.base_offset, 6);
        // Two batches of one idempotent producer in one partition entry are refused.
        let mut two = numbered("d", 1, id, 5).to_vec();
        two.extend_from_slice(&numbered("e", 1, id, 6));
        let refused = produce(&mut client, Bytes::from(two)).await;
        assert_eq!(refused.error_code, ErrorCode::InvalidBatch);
        let values = values(&client.read_all("idem", 0, 0).await);
        assert_eq!(
            values,
            ["a-0", "a-1", "a-2", "b-0", "b-1", "x-0", "plain-0"]
        );

        // A new epoch restarts at sequence 0 and fences the old one.
        let bumped = init(&mut client, id.0, id.1).await;
        assert_eq!(bumped, (id.0, 1));
        let fresh = produce(&mut client, numbered("f", 1, bumped, 0)).await;
        assert_eq!((fresh.error_code, fresh.base_offset), (ErrorCode::None, 7));
        let fenced = produce(&mut client, numbered("g", 1, id, 5)).await;
        assert_eq!(fenced.error_code, ErrorCode::ProducerFenced);
        let never_given = produce(&mut client, numbered("h", 1, (id.0, 2), 0)).await;
        assert_eq!(never_given.error_code, ErrorCode::InvalidProducerEpoch);
        let again = init(&mut client, bumped.0, bumped.1).await;
        assert_eq!(again, (id.0, 2));
        let restart_at_one = produce(&mut client, numbered("h", 1, again, 1)).await;
        assert_eq!(restart_at_one.error_code, ErrorCode::OutOfOrderSequence);
        (bumped, other, id.0.max(other.0))
    })
    .await;

    // After kill -9, the producer state is rebuilt from the log: retries are still
    // recognised, and new ids never repeat one given before.
    tokio::task::block_in_place(|| {
        broker.kill_9();
        broker.restart();
    });
    bounded(async {
        let mut client = Client::connect(&broker.address).await;
        let retry = produce(&mut client, numbered("f", 1, bumped, 0)).await;
        assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 7));
        let next = produce(&mut client, numbered("i", 1, bumped, 1)).await;
        assert_eq!(next.base_offset, 8);
        // An id given before the restart and never bumped is still accepted.
        let other_next = produce(&mut client, numbered("y", 1, other, 1)).await;
        assert_eq!(
            (other_next.error_code, other_next.base_offset),
            (ErrorCode::None, 9)
        );
        let (after_restart, _) = init(&mut client, -1, -1).await;
        assert!(
            after_restart > given,
            "id {after_restart} was given before the kill"
        );
        let values = values(&client.read_all("idem", 0, 0).await);
        assert_eq!(values.len(), 10, "{values:?}");
    })
    .await;
}
