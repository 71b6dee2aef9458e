//! Producer ids in a three-broker cluster: every broker hands out ids from its own block
//! of the metadata's counter, so ids are distinct across brokers, and an id one broker
//! gave is accepted by the leaders on the others, so an idempotent producer bootstrapped
//! at one broker delivers to partitions led by all three.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use strata_client::{Producer, ProducerConfig, ProducerRecord};
use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

const PARTITIONS: u32 = 6;

/// Three brokers on loopback, each a voter, on cluster ports free a moment ago.
fn start_cluster(dirs: &[tempfile::TempDir; 3]) -> Vec<BrokerProcess> {
    let ports: Vec<u16> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect();
    let peers = (0..3)
        .map(|index| format!("{}@127.0.0.1:{}", index + 1, ports[index]))
        .collect::<Vec<_>>()
        .join(",");
    // Started together: a broker serves once a quorum has registered it.
    std::thread::scope(|scope| {
        let starting: Vec<_> = (0..3)
            .map(|index| {
                let settings = [
                    format!("node_id={}", index + 1),
                    format!("cluster_listen=127.0.0.1:{}", ports[index]),
                    format!("peers={peers}"),
                ];
                let dir = dirs[index].path();
                scope.spawn(move || {
                    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
                    BrokerProcess::start(dir, &settings)
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|broker| broker.join().expect("broker started"))
            .collect()
    })
}

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
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "{:?}",
        response.error_message
    );
    (response.producer_id, response.producer_epoch)
}

/// The metadata `client`'s broker gives for `topic`.
async fn metadata(client: &mut Client, topic: &str) -> MetadataResponse {
    let Response::Metadata(response) = client
        .call(MetadataRequest {
            topics: Some(vec![topic.into()]),
        })
        .await
    else {
        panic!("wrong response type")
    };
    response
}

/// Waits until `client`'s broker knows all three brokers alive, so a topic is placed on
/// all of them.
async fn await_brokers(client: &mut Client) {
    let deadline = Instant::now() + WAIT;
    while metadata(client, "spread").await.brokers.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the brokers did not all register"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each partition's leader, once every partition of `topic` has one.
async fn leaders(client: &mut Client, topic: &str) -> Vec<u32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders: Vec<u32> = metadata(client, topic)
            .await
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .filter_map(|partition| u32::try_from(partition.leader_id).ok())
            .collect();
        if leaders.len() == PARTITIONS as usize {
            return leaders;
        }
        assert!(Instant::now() < deadline, "partitions without a leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Produces one batch under `id` to `partition` through its leader, retrying while the
/// leader has not yet applied the block that holds `id` (a retriable error).
async fn produce_until_known(
    leader: &mut Client,
    partition: u32,
    id: (i64, i16),
) -> ProducePartitionResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        let batch = idempotent_batch_of("raw", 1, id, 0);
        let response = leader
            .produce("spread", partition, Acks::Leader, batch)
            .await;
        if response.error_code != ErrorCode::LeaderNotAvailable || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_distinct_across_brokers_and_accepted_by_every_leader() {
    let dirs = [data_dir(), data_dir(), data_dir()];
    let brokers = tokio::task::block_in_place(|| start_cluster(&dirs));
    bounded(async {
        let mut clients = Vec::new();
        for broker in &brokers {
            clients.push(Client::connect(&broker.address).await);
        }
        await_brokers(&mut clients[0]).await;
        clients[0].create_topic("spread", PARTITIONS, &[]).await;
        let leaders = leaders(&mut clients[0], "spread").await;
        let led: BTreeSet<u32> = leaders.iter().copied().collect();
        assert_eq!(led, BTreeSet::from([1, 2, 3]), "leaders {leaders:?}");

        // An idempotent producer bootstrapped at broker 1 reaches every leader.
        let producer = Producer::new(ProducerConfig::new(&brokers[0].address)).unwrap();
        let mut acks = Vec::new();
        for partition in 0..PARTITIONS {
            for index in 0..3 {
                let record = ProducerRecord::new("spread", format!("{partition}-{index}"))
                    .partition(partition);
                acks.push(producer.send(record).await.unwrap());
            }
        }
        for ack in acks {
            ack.await.expect("record delivered");
        }
        producer.close().await;

        // Each broker gives its own ids, and every leader accepts every broker's.
        let mut ids = BTreeSet::new();
        for client in &mut clients {
            let id = init(client).await;
            assert_eq!(id.1, 0);
            assert!(ids.insert(id.0), "id {} given twice", id.0);
        }
        for (partition, leader) in leaders.iter().enumerate() {
            let partition = partition as u32;
            let id = *ids.iter().nth(partition as usize % ids.len()).unwrap();
            let client = &mut clients[*leader as usize - 1];
            let response = produce_until_known(client, partition, (id, 0)).await;
            assert_eq!(
                response.error_code,
                ErrorCode::None,
                "id {id} at broker {leader}: {:?}",
                response.error_message
            );
        }
    })
    .await;
}
