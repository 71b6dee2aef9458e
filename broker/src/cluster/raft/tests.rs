//! The quorum on loopback: one and three voters, forwarding, leader loss, restarts.
//!
//! Each node runs a [`ListMachine`] that records the commands it applied and asserts that
//! indexes only grow, so an entry applied twice fails the test.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::{
    LeaderService, Quorum, QuorumConfig, QuorumError, SNAPSHOT_INTERVAL_ENTRIES, StateMachine,
};

/// Every test's bound.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a proposal in a test may take, elections included.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The commands a node applied, with their indexes.
pub(super) type Applied = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A state machine that lists what it applied.
#[derive(Default)]
pub(super) struct ListMachine {
    state: ListState,
    shared: Applied,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct ListState {
    applied: u64,
    commands: Vec<(u64, Vec<u8>)>,
}

impl ListMachine {
    fn advance(&mut self, index: u64) {
        assert!(
            index > self.state.applied || (index == 0 && self.state.applied == 0),
            "entry {index} applied after entry {}",
            self.state.applied
        );
        self.state.applied = index;
    }
}

impl StateMachine for ListMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.advance(index);
        self.state.commands.push((index, command.to_vec()));
        self.shared.lock().unwrap().push((index, command.to_vec()));
        [b"ok:".as_slice(), command].concat()
    }

    fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    fn applied(&self) -> u64 {
        self.state.applied
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).unwrap()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.state = serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
        *self.shared.lock().unwrap() = self.state.commands.clone();
        Ok(())
    }
}

/// A leader service that names the leader and the caller.
struct Echo {
    node_id: u64,
}

impl LeaderService for Echo {
    fn handle(&self, from: u64, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let answer = format!(
            "{} answers {from}: {}",
            self.node_id,
            String::from_utf8_lossy(&request)
        );
        async move { answer.into_bytes() }.boxed()
    }
}

/// A running node of a test cluster.
pub(super) struct Member {
    pub quorum: Quorum,
    pub applied: Applied,
}

/// Voters on loopback, each with its own directory.
pub(super) struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<u64, PathBuf>,
    pub voters: BTreeMap<u64, String>,
    pub members: BTreeMap<u64, Member>,
    snapshot_interval_entries: u64,
}

impl Cluster {
    /// Starts `count` voters, ids 1 to `count`.
    pub async fn start(count: u64, snapshot_interval_entries: u64) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=count {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, listener);
        }
        let voters = listeners
            .iter()
            .map(|(&id, l)| (id, l.local_addr().unwrap().to_string()))
            .collect();
        let dirs = (1..=count)
            .map(|id| (id, root.path().join(format!("node-{id}/metadata"))))
            .collect();
        let mut cluster = Cluster {
            _root: root,
            dirs,
            voters,
            members: BTreeMap::new(),
            snapshot_interval_entries,
        };
        for (id, listener) in listeners {
            let member = cluster.open(id, listener).await.unwrap();
            cluster.members.insert(id, member);
        }
        cluster
    }

    /// Node `id`'s directory.
    pub fn dir(&self, id: u64) -> &PathBuf {
        &self.dirs[&id]
    }

    /// Starts node `id` on `listener` from its directory.
    async fn open(&self, id: u64, listener: TcpListener) -> Result<Member, QuorumError> {
        self.open_with(id, listener, self.voters.clone()).await
    }

    /// Starts node `id` on `listener` from its directory, with `voters` configured.
    async fn open_with(
        &self,
        id: u64,
        listener: TcpListener,
        voters: BTreeMap<u64, String>,
    ) -> Result<Member, QuorumError> {
        let config = QuorumConfig {
            node_id: id,
            voters,
            dir: self.dirs[&id].clone(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(200),
            election_timeout_max: Duration::from_millis(400),
        };
        let machine = ListMachine::default();
        let applied = machine.shared.clone();
        let service = Arc::new(Echo { node_id: id });
        let quorum = Quorum::start_with(
            config,
            listener,
            machine,
            service,
            self.snapshot_interval_entries,
        )
        .await?;
        Ok(Member { quorum, applied })
    }

    /// Shuts node `id` down.
    pub async fn stop(&mut self, id: u64) {
        let member = self.members.remove(&id).expect("a running node");
        member.quorum.shutdown().await;
    }

    /// Starts node `id` again at its address and directory.
    pub async fn restart(&mut self, id: u64) -> Result<(), QuorumError> {
        let listener = TcpListener::bind(&self.voters[&id]).await.unwrap();
        let member = self.open(id, listener).await?;
        self.members.insert(id, member);
        Ok(())
    }

    /// The running node `id`.
    pub fn quorum(&self, id: u64) -> &Quorum {
        &self.members[&id].quorum
    }

    /// What node `id` applied.
    pub fn applied(&self, id: u64) -> Vec<(u64, Vec<u8>)> {
        self.members[&id].applied.lock().unwrap().clone()
    }

    /// Waits until every running node knows the same running leader, and returns it.
    pub async fn leader(&self) -> u64 {
        poll(|| {
            let known: Vec<Option<u64>> = self
                .members
                .values()
                .map(|member| *member.quorum.leader().borrow())
                .collect();
            let first = known.first().copied().flatten()?;
            let agreed = known.iter().all(|&leader| leader == Some(first));
            (agreed && self.members.contains_key(&first)).then_some(first)
        })
        .await
    }

    /// Waits until every running node applied exactly `commands`.
    pub async fn converge(&self, commands: &[&str]) {
        let expected: Vec<Vec<u8>> = commands
            .iter()
            .map(|command| command.as_bytes().to_vec())
            .collect();
        for &id in self.members.keys() {
            poll(|| {
                let applied: Vec<Vec<u8>> = self
                    .applied(id)
                    .into_iter()
                    .map(|(_, command)| command)
                    .collect();
                (applied == expected).then_some(())
            })
            .await;
        }
    }

    /// Shuts every running node down.
    pub async fn stop_all(&mut self) {
        for id in self.members.keys().copied().collect::<Vec<_>>() {
            self.stop(id).await;
        }
    }
}

/// Proposes `command` on `quorum` and checks the outcome.
pub(super) async fn propose(quorum: &Quorum, command: &str) -> u64 {
    let proposed = quorum
        .propose(
            command.as_bytes().to_vec(),
            Instant::now() + PROPOSE_TIMEOUT,
        )
        .await
        .unwrap_or_else(|error| panic!("proposing {command}: {error}"));
    assert_eq!(proposed.outcome, format!("ok:{command}").into_bytes());
    proposed.index
}

/// Polls `check` until it gives a value; the test's timeout bounds it.
pub(super) async fn poll<T>(mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `quorum` has a snapshot through `index`, asking for one until it does
/// (openraft ignores the request while another snapshot is being built).
pub(super) async fn snapshot_through(quorum: &Quorum, index: u64) {
    let mut metrics = quorum.metrics();
    loop {
        let snapshot = metrics.borrow_and_update().snapshot;
        if snapshot.is_some_and(|snapshot| snapshot.index >= index) {
            return;
        }
        quorum.snapshot_now().await;
        let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
    }
}

/// Runs `test` within [`TEST_TIMEOUT`].
pub(super) async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_elects_itself_and_applies_commands_in_order() {
    bounded(async {
        let started = Instant::now();
        let mut cluster = Cluster::start(1, SNAPSHOT_INTERVAL_ENTRIES).await;
        let quorum = cluster.quorum(1).clone();
        let first = propose(&quorum, "a").await;
        tracing::info!(elapsed = ?started.elapsed(), "a one-voter cluster committed its first command");
        let second = propose(&quorum, "b").await;
        assert!(second > first);
        assert_eq!(cluster.applied(1), vec![(first, b"a".to_vec()), (second, b"b".to_vec())]);
        let status = quorum.status();
        assert_eq!((status.node_id, status.leader), (1, Some(1)));
        assert_eq!((status.applied, status.committed, status.last_log_index), (second, second, second));
        assert_eq!(status.voters.len(), 1);
        assert_eq!(status.voters[0].matched, Some(second));
        assert_eq!(*quorum.applied().borrow(), second);
        let answer = quorum.call_leader(b"hello".to_vec(), Instant::now() + PROPOSE_TIMEOUT).await.unwrap();
        assert_eq!(answer, b"1 answers 1: hello");
        let oversized = vec![0; super::COMMAND_BYTES_MAX + 1];
        let error = quorum.propose(oversized, Instant::now() + PROPOSE_TIMEOUT).await.unwrap_err();
        assert!(error.to_string().contains("maximum"), "{error}");
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_proposals_and_leader_calls_and_every_voter_applies_them() {
    bounded(async {
        let mut cluster = Cluster::start(3, SNAPSHOT_INTERVAL_ENTRIES).await;
        let leader = cluster.leader().await;
        let follower = *cluster.members.keys().find(|&&id| id != leader).unwrap();
        propose(cluster.quorum(follower), "from-a-follower").await;
        assert_eq!(
            cluster.applied(follower).len(),
            1,
            "applied here before propose returns"
        );
        propose(cluster.quorum(leader), "from-the-leader").await;
        cluster
            .converge(&["from-a-follower", "from-the-leader"])
            .await;
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let answer = cluster
            .quorum(follower)
            .call_leader(b"status".to_vec(), deadline)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            format!("{leader} answers {follower}: status")
        );
        let status = cluster.quorum(leader).status();
        assert_eq!(status.leader, Some(leader));
        assert!(
            status.voters.iter().all(|voter| voter.matched.is_some()),
            "{status:?}"
        );
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_the_old_one_catches_up_after_restart() {
    bounded(async {
        let mut cluster = Cluster::start(3, SNAPSHOT_INTERVAL_ENTRIES).await;
        let old_leader = cluster.leader().await;
        propose(cluster.quorum(old_leader), "before").await;
        cluster.stop(old_leader).await;
        let survivor = *cluster.members.keys().next().unwrap();
        propose(cluster.quorum(survivor), "after").await;
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, old_leader);
        cluster.restart(old_leader).await.unwrap();
        cluster.converge(&["before", "after"]).await;
        propose(cluster.quorum(old_leader), "rejoined").await;
        cluster.converge(&["before", "after", "rejoined"]).await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_voters_one_at_a_time_and_all_at_once_keeps_the_state() {
    bounded(async {
        let mut cluster = Cluster::start(3, SNAPSHOT_INTERVAL_ENTRIES).await;
        let mut expected = Vec::new();
        for id in 1..=3 {
            let command = format!("before-restarting-{id}");
            propose(cluster.quorum(cluster.leader().await), &command).await;
            expected.push(command);
            cluster.stop(id).await;
            cluster.restart(id).await.unwrap();
        }
        let commands: Vec<&str> = expected.iter().map(String::as_str).collect();
        cluster.converge(&commands).await;
        cluster.stop_all().await;
        for id in 1..=3 {
            cluster.restart(id).await.unwrap();
        }
        cluster.converge(&commands).await;
        let leader = cluster.leader().await;
        propose(cluster.quorum(leader), "after-all").await;
        expected.push("after-all".to_string());
        let commands: Vec<&str> = expected.iter().map(String::as_str).collect();
        cluster.converge(&commands).await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_closes_only_its_connection() {
    bounded(async {
        let mut cluster = Cluster::start(1, SNAPSHOT_INTERVAL_ENTRIES).await;
        let address = cluster.voters[&1].clone();
        let mut oversized = TcpStream::connect(&address).await.unwrap();
        oversized.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(oversized.read(&mut [0; 16]).await.unwrap_or(0), 0, "closed");
        let mut garbage = TcpStream::connect(&address).await.unwrap();
        garbage
            .write_all(&[0, 0, 0, 4, b'n', b'o', b'p', b'e'])
            .await
            .unwrap();
        assert_eq!(garbage.read(&mut [0; 16]).await.unwrap_or(0), 0, "closed");
        propose(cluster.quorum(1), "still-serving").await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_with_no_quorum_is_unavailable_at_its_deadline() {
    bounded(async {
        let mut cluster = Cluster::start(3, SNAPSHOT_INTERVAL_ENTRIES).await;
        cluster.leader().await;
        cluster.stop(1).await;
        cluster.stop(2).await;
        let deadline = Instant::now() + Duration::from_millis(500);
        let error = cluster
            .quorum(3)
            .propose(b"lost".to_vec(), deadline)
            .await
            .unwrap_err();
        assert!(
            matches!(error, super::ProposeError::Unavailable(_)),
            "{error}"
        );
        assert_eq!(cluster.quorum(3).failure(), None);
        cluster.quorum(3).shutdown().await;
        assert!(cluster.quorum(3).failure().is_some());
        let error = cluster
            .quorum(3)
            .propose(b"late".to_vec(), Instant::now() + PROPOSE_TIMEOUT)
            .await;
        assert!(
            matches!(error, Err(super::ProposeError::ShuttingDown)),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_formed_with_other_voters_refuses_to_start() {
    bounded(async {
        let mut cluster = Cluster::start(1, SNAPSHOT_INTERVAL_ENTRIES).await;
        propose(cluster.quorum(1), "a").await;
        cluster.stop(1).await;
        let listener = TcpListener::bind(&cluster.voters[&1]).await.unwrap();
        let mut voters = cluster.voters.clone();
        voters.insert(2, "127.0.0.1:1".to_string());
        let Err(error) = cluster.open_with(1, listener, voters).await else {
            panic!("other voters must not start");
        };
        assert!(matches!(error, QuorumError::Config(_)), "{error}");
        assert!(error.to_string().contains("changing the voters"), "{error}");
    })
    .await;
}
