//! What each broker of a [`Cluster`] shows on its own: its `Metadata` answer, whether a
//! partition's leader serves it, and which partition logs are in its data directory.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{Cluster, POLL};
use crate::WAIT;

impl Cluster {
    /// Broker `id`'s own view of every topic, from a `Metadata` request to it alone:
    /// each topic's partitions' leaders, by index (`None` for a partition without one).
    pub async fn topics_on(&self, id: u32) -> BTreeMap<String, Vec<Option<u32>>> {
        let mut client = crate::Client::connect(&self.address(id)).await;
        let request = strata_protocol::messages::MetadataRequest { topics: None };
        let strata_protocol::Response::Metadata(response) = client.call(request).await else {
            panic!("not a metadata response")
        };
        response
            .topics
            .into_iter()
            .filter(|topic| topic.error_code.is_ok())
            .map(|topic| {
                let leaders = topic
                    .partitions
                    .iter()
                    .map(|partition| u32::try_from(partition.leader_id).ok())
                    .collect();
                (topic.name, leaders)
            })
            .collect()
    }

    /// Broker `id`'s `Metadata` answer for one partition: leader, epoch, replicas and
    /// in-sync set.
    pub async fn partition_on(
        &self,
        id: u32,
        topic: &str,
        partition: u32,
    ) -> strata_protocol::messages::PartitionMetadata {
        let mut client = crate::Client::connect(&self.address(id)).await;
        let request = strata_protocol::messages::MetadataRequest {
            topics: Some(vec![topic.to_owned()]),
        };
        let strata_protocol::Response::Metadata(mut response) = client.call(request).await else {
            panic!("not a metadata response")
        };
        let mut found = response.topics.remove(0);
        assert!(found.error_code.is_ok(), "metadata of {topic}: {found:?}");
        found.partitions.remove(partition as usize)
    }

    /// Polls broker `id` until its view of `topic`'s `partition` satisfies `condition`;
    /// returns that view.
    ///
    /// # Panics
    /// If it does not within [`WAIT`], with the last view.
    pub async fn wait_partition(
        &self,
        id: u32,
        (topic, partition): (&str, u32),
        condition: impl Fn(&strata_protocol::messages::PartitionMetadata) -> bool,
        what: &str,
    ) -> strata_protocol::messages::PartitionMetadata {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = self.partition_on(id, topic, partition).await;
            if condition(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "broker {id}: {topic}-{partition} not {what} within {WAIT:?}: {view:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls every broker in `ids` until each one's [`topics_on`](Self::topics_on)
    /// satisfies `condition`.
    ///
    /// # Panics
    /// If some broker's view does not within [`WAIT`], with that view.
    pub async fn wait_for_topics(
        &self,
        ids: &[u32],
        condition: impl Fn(&BTreeMap<String, Vec<Option<u32>>>) -> bool,
        what: &str,
    ) {
        let deadline = Instant::now() + WAIT;
        for &id in ids {
            loop {
                let topics = self.topics_on(id).await;
                if condition(&topics) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{WAIT:?} passed, broker {id} still does not show {what}: {topics:?}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Waits until every broker knows a leader for each partition of `topic` and each
    /// leader serves its partition (a fetch there succeeds); returns the leaders by
    /// partition. A leader opens its log only once it applied the topic, so a produce
    /// sent before may be answered with a retriable error.
    ///
    /// # Panics
    /// If that does not happen within [`WAIT`].
    pub async fn wait_serving(&self, topic: &str) -> Vec<u32> {
        self.wait_for_topics(
            &self.running(),
            |topics| {
                topics
                    .get(topic)
                    .is_some_and(|leaders| leaders.iter().all(Option::is_some))
            },
            &format!("{topic} with a leader per partition"),
        )
        .await;
        let leaders: Vec<u32> = self.topics_on(self.running()[0]).await[topic]
            .iter()
            .map(|leader| leader.expect("a leader"))
            .collect();
        let deadline = Instant::now() + WAIT;
        for (partition, &leader) in leaders.iter().enumerate() {
            let mut client = crate::Client::connect(&self.address(leader)).await;
            loop {
                let fetched = client.fetch(topic, partition as u32, 0, 0, 0).await;
                if fetched.error_code.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{topic}-{partition} not served by its leader {leader}: {:?}",
                    fetched.error_code
                );
                tokio::time::sleep(POLL).await;
            }
        }
        leaders
    }

    /// The partitions of `topic` whose log directories are in broker `id`'s data
    /// directory, ascending.
    pub fn partition_dirs(&self, id: u32, topic: &str) -> Vec<u32> {
        let mut partitions: Vec<u32> = std::fs::read_dir(self.data_dir(id))
            .expect("read a data dir")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let (name, index) = name.rsplit_once('-')?;
                (name == topic).then(|| index.parse().ok())?
            })
            .collect();
        partitions.sort_unstable();
        partitions
    }
}
