//! Producer fencing cannot be forged: produce accepts only producer ids and epochs the
//! broker gave out, so a flood of made-up ids never reaches the producer state and a real
//! idempotent producer's retry is still recognised; and InitProducerId is rate-limited per
//! connection.

use bytes::Bytes;
use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

/// More made-up ids than a partition remembers producers (10 000): had they been
/// accepted, the real producer, oldest in the log, would have been evicted.
const SPOOFED_IDS: i64 = 10_001;

async fn init(client: &mut Client) -> (i64, i16) {
    let Response::InitProducerId(response) = client
        .call(InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
    else {
        panic!("wrong response type")
    };
    assert_eq!(response.error_code, ErrorCode::None);
    (response.producer_id, response.producer_epoch)
}

fn numbered(prefix: &str, id: (i64, i16), sequence: i32) -> Bytes {
    idempotent_batch_of(prefix, 1, id, sequence)
}

async fn produce(client: &mut Client, batch: Bytes) -> ProducePartitionResponse {
    client.produce("fenced", 0, Acks::Leader, batch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_producer_ids_are_refused_and_the_real_producer_keeps_its_retries() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let real = bounded(async {
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("fenced", 1, &[]).await;
        let real = init(&mut client).await;
        let first = produce(&mut client, numbered("a", real, 0)).await;
        assert_eq!((first.error_code, first.base_offset), (ErrorCode::None, 0));

        for spoof in 0..SPOOFED_IDS {
            let id = real.0 + 1 + spoof;
            let refused = produce(&mut client, numbered("spoof", (id, 0), 0)).await;
            assert_eq!(refused.error_code, ErrorCode::UnknownProducerId, "id {id}");
        }
        // Another broker's id, and the real id at an epoch never given (which would
        // fence the real producer), are refused too.
        let other_node = produce(&mut client, numbered("spoof", (1 << 31, 0), 0)).await;
        assert_eq!(other_node.error_code, ErrorCode::UnknownProducerId);
        let newer = produce(&mut client, numbered("spoof", (real.0, 1), 0)).await;
        assert_eq!(newer.error_code, ErrorCode::InvalidProducerEpoch);

        // The real producer's retry is still recognised: no duplicate.
        let retry = produce(&mut client, numbered("a", real, 0)).await;
        assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 0));
        let next = produce(&mut client, numbered("b", real, 1)).await;
        assert_eq!((next.error_code, next.base_offset), (ErrorCode::None, 1));
        let values = values(&client.read_all("fenced", 0, 0).await);
        assert_eq!(values, ["a-0", "b-0"]);
        real
    })
    .await;

    // Ids given before a restart stay valid; the next id to give is still refused.
    tokio::task::block_in_place(|| {
        broker.kill_9();
        broker.restart();
    });
    bounded(async {
        let mut client = Client::connect(&broker.address).await;
        let retry = produce(&mut client, numbered("b", real, 1)).await;
        assert_eq!((retry.error_code, retry.base_offset), (ErrorCode::None, 1));
        let next = init(&mut client).await;
        let unissued = produce(&mut client, numbered("spoof", (next.0 + 1, 0), 0)).await;
        assert_eq!(unissued.error_code, ErrorCode::UnknownProducerId);
        let values = values(&client.read_all("fenced", 0, 0).await);
        assert_eq!(values, ["a-0", "b-0"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_producer_id_flood_on_one_connection_hits_the_limit() {
    let dir = data_dir();
    let broker = BrokerProcess::start(
        dir.path(),
        &["connection_producer_id_requests_per_second_max=5"],
    );
    bounded(async {
        let mut flood = Client::connect(&broker.address).await;
        let request = InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        };
        // Pipelined, so the flood outruns the refill whatever the machine's speed.
        let requests = 1_000;
        for _ in 0..requests {
            flood.send(request.clone().into()).await;
        }
        let (mut given, mut limited) = (0, 0);
        for _ in 0..requests {
            match flood.receive(strata_protocol::ApiKey::InitProducerId).await {
                (_, Ok(Response::InitProducerId(response))) if response.error_code.is_ok() => {
                    given += 1;
                }
                (_, Err((ErrorCode::LimitExceeded, message))) => {
                    assert!(message.contains("connection_producer_id_requests_per_second_max"));
                    limited += 1;
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert!(given >= 5, "a burst of one second's worth is served");
        assert!(limited > 0 && given < requests, "given {given}");
        // The limit is per connection: another client is served at once.
        let mut other = Client::connect(&broker.address).await;
        init(&mut other).await;
    })
    .await;
}
