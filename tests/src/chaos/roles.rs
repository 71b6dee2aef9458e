//! Who plays which part in the cluster at a fault's time: the leader and followers of a
//! partition of the workload's topic (Metadata), and the controller (DescribeCluster),
//! asked of the brokers through the client crate. A nemesis targets a role, not a fixed
//! broker, so that "kill the leader" kills whoever leads now.
//!
//! The nemesis thread is outside the async runtime: each question blocks on the
//! runtime's handle, bounded in time. A broker cut off from the others keeps an old view
//! and answers it, so a partition's view is the one with the highest leader epoch among
//! the brokers asked, and a caller in the middle of a fault asks only the brokers it has
//! not cut off.

use std::time::{Duration, Instant};

use strata_client::{Admin, ClientConfig};
use tokio::runtime::Handle;

/// How long one broker may take to answer one question.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How often [`Roles::wait_for`] asks again.
const POLL: Duration = Duration::from_millis(200);

/// One partition as the brokers asked see it. Brokers are indexes (node id - 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader, if there is one.
    pub leader: Option<usize>,
    /// The leader's epoch.
    pub leader_epoch: u32,
    /// Every replica.
    pub replicas: Vec<usize>,
    /// The in-sync replicas.
    pub in_sync: Vec<usize>,
}

impl PartitionView {
    /// A replica other than the leader: an in-sync one if there is one.
    pub fn follower(&self) -> Option<usize> {
        let not_leader = |node: &&usize| Some(**node) != self.leader;
        let in_sync = self.in_sync.iter().find(not_leader);
        in_sync
            .or_else(|| self.replicas.iter().find(not_leader))
            .copied()
    }
}

/// Asks the brokers about the workload's topic. Cloning shares nothing but settings;
/// thread-safe.
#[derive(Debug, Clone)]
pub struct Roles {
    runtime: Handle,
    /// Each broker's client address (its proxy's), by index.
    addresses: Vec<String>,
    topic: String,
    partitions: u32,
}

impl Roles {
    /// Asks about `partitions` partitions of `topic`, at `addresses`, on the current
    /// runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(addresses: Vec<String>, topic: &str, partitions: u32) -> Self {
        Self {
            runtime: Handle::current(),
            addresses,
            topic: topic.to_owned(),
            partitions,
        }
    }

    /// The topic asked about.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partitions of the topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Every partition as the brokers in `among` see it, by index: per partition, the
    /// answer with the highest leader epoch; `None` where none of them answered.
    /// Blocks, up to [`ANSWER_WAIT`]; call it off the runtime.
    pub fn views(&self, among: &[usize]) -> Vec<Option<PartitionView>> {
        self.runtime.block_on(self.ask_views(among))
    }

    /// Partition `partition` as [`views`](Self::views) sees it.
    pub fn view(&self, partition: u32, among: &[usize]) -> Option<PartitionView> {
        let index = usize::try_from(partition).expect("a partition index fits usize");
        self.views(among).into_iter().nth(index).flatten()
    }

    /// The controller (the metadata quorum's leader) as the brokers in `among` see it.
    /// Blocks, up to [`ANSWER_WAIT`].
    pub fn controller(&self, among: &[usize]) -> Option<usize> {
        let admin = self.admin(among)?;
        let described = self
            .runtime
            .block_on(async { tokio::time::timeout(ANSWER_WAIT, admin.describe_cluster()).await });
        let leader = described.ok()?.ok()?.controller.leader?;
        index_of(leader)
    }

    /// Asks the brokers in `among` until `condition` holds of the views; false if it
    /// did not `within`, or once `stopping` says the run is being stopped. Blocks.
    pub fn wait_for(
        &self,
        among: &[usize],
        within: Duration,
        stopping: impl Fn() -> bool,
        condition: impl Fn(&[Option<PartitionView>]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if condition(&self.views(among)) {
                return true;
            }
            if Instant::now() >= deadline || stopping() {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// An admin client bootstrapped from the brokers in `among` only.
    fn admin(&self, among: &[usize]) -> Option<Admin> {
        let bootstrap: Vec<String> = among
            .iter()
            .filter_map(|&index| self.addresses.get(index).cloned())
            .collect();
        if bootstrap.is_empty() {
            return None;
        }
        let wait_ms = u64::try_from(ANSWER_WAIT.as_millis()).unwrap_or(u64::MAX);
        let config = ClientConfig {
            request_timeout_ms: wait_ms,
            connect_timeout_ms: wait_ms,
            ..ClientConfig::new(&bootstrap.join(","))
        };
        // Built on the runtime: its connections run there.
        let _entered = self.runtime.enter();
        Admin::new(config).ok()
    }

    async fn ask_views(&self, among: &[usize]) -> Vec<Option<PartitionView>> {
        let count = usize::try_from(self.partitions).expect("a partition count fits usize");
        let mut best: Vec<Option<PartitionView>> = vec![None; count];
        let Some(admin) = self.admin(among) else {
            return best;
        };
        let topics = [self.topic.as_str()];
        let asks = among.iter().filter_map(|&index| {
            let address = self.addresses.get(index)?;
            let admin = &admin;
            Some(async move {
                let asked = admin.broker_metadata(address, Some(&topics));
                tokio::time::timeout(ANSWER_WAIT, asked).await
            })
        });
        for answer in futures_util::future::join_all(asks).await {
            let Ok(Ok(metadata)) = answer else {
                continue;
            };
            let Some(topic) = metadata
                .topics
                .iter()
                .find(|topic| topic.name == self.topic)
            else {
                continue;
            };
            for partition in &topic.partitions {
                let Some(slot) = usize::try_from(partition.partition)
                    .ok()
                    .and_then(|index| best.get_mut(index))
                else {
                    continue;
                };
                let indexes = |ids: &[u32]| ids.iter().filter_map(|&id| index_of(id)).collect();
                let view = PartitionView {
                    leader: partition.leader.and_then(index_of),
                    leader_epoch: partition.leader_epoch,
                    replicas: indexes(&partition.replicas),
                    in_sync: indexes(&partition.in_sync_replicas),
                };
                if slot
                    .as_ref()
                    .is_none_or(|known| known.leader_epoch < view.leader_epoch)
                {
                    *slot = Some(view);
                }
            }
        }
        best
    }
}

/// The index of node id `id` (ids start at 1).
fn index_of(id: u32) -> Option<usize> {
    usize::try_from(id.checked_sub(1)?).ok()
}
