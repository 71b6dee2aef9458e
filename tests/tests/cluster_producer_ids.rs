//! Producer ids in a three-broker cluster: every broker hands out ids from its own block
//! of the metadata's counter, so ids are distinct across brokers, and an id one broker
//! gave is accepted by the leaders on the others, so an idempotent producer bootstrapped
//! at one broker delivers to partitions led by all three.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strata_client::{Producer, ProducerConfig, ProducerRecord};
use strata_protocol::ErrorCode;
use strata_protocol::messages::*;
use strata_tests::cluster::Cluster;
use strata_tests::*;

const PARTITIONS: u32 = 6;

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
    bounded(async {
        // Ready once every broker sees all three alive, so the topic spreads over them.
        let cluster = Cluster::start().await;
        let mut clients = Vec::new();
        for id in cluster.ids() {
            clients.push(Client::connect(&cluster.address(id)).await);
        }
        clients[0].create_topic("spread", PARTITIONS, &[]).await;
        let leaders = cluster.wait_serving("spread").await;
        let led: BTreeSet<u32> = leaders.iter().copied().collect();
        assert_eq!(led, BTreeSet::from([1, 2, 3]), "leaders {leaders:?}");

        // An idempotent producer bootstrapped at broker 1 reaches every leader.
        let producer = Producer::new(ProducerConfig::new(&cluster.address(1))).unwrap();
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
            let id = client.init_producer_id().await;
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
