//! Group membership for a subscribed [`Consumer`](crate::Consumer): the heartbeat task,
//! the state it shares with the consumer, and the pure reconciliation of owned
//! partitions against an assignment.
//!
//! The task only talks to the coordinator and records what it learns (member id, epoch,
//! the assignment, a fencing). Everything that touches fetch state, the rebalance
//! callbacks and commit-on-revoke runs inside `poll` on the application's task, which
//! then publishes the partitions it owns; the task reports them in its next heartbeat,
//! and that report is what confirms a revocation to the coordinator. The report also
//! holds every partition of the last assignment received (and of the one the consumer
//! is reconciling against), so a revocation is confirmed only once the partition is
//! neither owned nor about to be taken on.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, JOIN_EPOCH, LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
};
use strata_protocol::{Request, Response};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::cluster::{Cluster, unexpected};
use crate::config::ConsumerConfig;
use crate::coordinator::{Coordinator, from_wire, to_wire};
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// Longest wait between heartbeats, whatever the coordinator asks for, so a bogus
/// interval cannot silence a member until its session expires.
const HEARTBEAT_INTERVAL_MS_MAX: u64 = 60_000;

/// Told about partitions the group gives to or takes from a subscribed
/// [`Consumer`](crate::Consumer). Set with
/// [`Consumer::set_rebalance_listener`](crate::Consumer::set_rebalance_listener).
///
/// The methods run on the application's task, inside `poll` / `recv` (or `close`; and
/// `on_lost` also inside a commit that finds the member fenced), never concurrently
/// with each other. They cannot call the consumer; use them to
/// flush or reset per-partition state of the application.
///
/// # Example
/// ```
/// use strata_client::{RebalanceListener, TopicPartition};
///
/// #[derive(Default)]
/// struct Log(Vec<String>);
///
/// impl RebalanceListener for Log {
///     fn on_assigned(&mut self, partitions: &[TopicPartition]) {
///         self.0.extend(partitions.iter().map(|tp| format!("+{tp}")));
///     }
///     fn on_revoked(&mut self, partitions: &[TopicPartition]) {
///         self.0.extend(partitions.iter().map(|tp| format!("-{tp}")));
///     }
/// }
///
/// let mut log = Log::default();
/// log.on_lost(&[TopicPartition::new("orders", 1)]);
/// assert_eq!(log.0, ["-orders-1"]);
/// ```
pub trait RebalanceListener: Send {
    /// The consumer now owns `partitions` (sorted) and will fetch them from their
    /// committed offsets, or per `auto_offset_reset` where the group has none.
    fn on_assigned(&mut self, partitions: &[TopicPartition]);

    /// The consumer gave `partitions` (sorted) up in good order: nothing more of them is
    /// returned, and with auto-commit their positions were committed just before this
    /// call. Also called by [`Consumer::close`](crate::Consumer::close) and
    /// [`Consumer::unsubscribe`](crate::Consumer::unsubscribe).
    fn on_revoked(&mut self, partitions: &[TopicPartition]);

    /// The member was fenced (its session expired or a newer member replaced it) and
    /// `partitions` (sorted) already belong to someone else: nothing was committed, and
    /// records returned since the last commit will be delivered again elsewhere.
    /// Defaults to [`on_revoked`](Self::on_revoked).
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_revoked(partitions);
    }
}

/// A subscribed consumer's place in its group, from
/// [`Consumer::group_metadata`](crate::Consumer::group_metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The member id the coordinator gave, or empty while joining.
    pub member_id: String,
    /// The member's epoch; 0 while joining.
    pub member_epoch: i32,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
}

/// What changes when the partitions a consumer owns meet a new assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reconciliation {
    /// Owned, not in the assignment: stop fetching, commit, confirm. Sorted.
    pub(crate) revoked: Vec<TopicPartition>,
    /// In the assignment, not owned: look up committed offsets and start. Sorted.
    pub(crate) added: Vec<TopicPartition>,
}

/// Compares what the consumer owns with what the coordinator assigned.
pub(crate) fn reconcile<'a>(
    owned: impl IntoIterator<Item = &'a TopicPartition>,
    assignment: &BTreeSet<TopicPartition>,
) -> Reconciliation {
    let owned: BTreeSet<&TopicPartition> = owned.into_iter().collect();
    Reconciliation {
        revoked: owned
            .iter()
            .filter(|tp| !assignment.contains(**tp))
            .map(|tp| (*tp).clone())
            .collect(),
        added: assignment
            .iter()
            .filter(|tp| !owned.contains(tp))
            .cloned()
            .collect(),
    }
}

/// What the heartbeat task and the consumer share, behind [`Shared::state`].
#[derive(Debug)]
struct State {
    /// The id the coordinator confirmed; empty until joined and after a fencing.
    member_id: String,
    /// The id this consumer chose and sends when joining, so that a join retried after a
    /// lost reply continues as the same member instead of adding a second one.
    join_id: String,
    member_epoch: i32,
    /// The subscribed topics, sorted.
    topics: Vec<String>,
    /// Send the subscription (and assignor) in the next heartbeat: set on joining and
    /// when the topics change, cleared once a heartbeat carrying it is answered.
    send_subscription: bool,
    /// Every partition the coordinator lets the member own, as of the last heartbeat
    /// that carried an assignment; empty before joining and after a fencing.
    target: BTreeSet<TopicPartition>,
    /// What the consumer owns (published after it reconciled).
    owned: BTreeSet<TopicPartition>,
    /// The target of the consumer's last snapshot: it may be taking these partitions on
    /// right now, before it publishes what it owns.
    claimed: BTreeSet<TopicPartition>,
    /// The member was fenced and the consumer has not dropped its partitions yet.
    lost: bool,
    /// A non-retriable heartbeat error for the next `poll` to return.
    error: Option<Error>,
    /// The consumer is leaving: the task sends the leave heartbeat and ends.
    leaving: bool,
}

impl State {
    /// The heartbeat's `owned_partitions`: what the consumer owns, and also whatever it
    /// may start owning from the last assignment it received (`target`) or is acting on
    /// (`claimed`). The coordinator takes a report disjoint from a pending revocation as
    /// its confirmation, so a partition is reported until it is neither owned nor
    /// targeted. Reporting `owned` alone would let a heartbeat whose reply was lost
    /// leave a stale `target` behind: the coordinator would hand the partition on while
    /// the consumer still starts fetching it from that target.
    fn reported(&self) -> BTreeSet<TopicPartition> {
        let mut reported = self.owned.clone();
        reported.extend(self.target.iter().cloned());
        reported.extend(self.claimed.iter().cloned());
        reported
    }
}

/// State shared by a consumer and its heartbeat task. Thread-safe: a std mutex held
/// only to read or update fields, never across an await.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the task: a revocation was confirmed or the member leaves.
    wake_task: Notify,
    /// Wakes a waiting `poll`: the assignment changed, the member was fenced, or an
    /// error is waiting.
    wake_consumer: Notify,
}

/// What the consumer reconciles against, taken at the start of a reconciliation.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) target: BTreeSet<TopicPartition>,
    /// The member was fenced since the last snapshot: drop every partition.
    pub(crate) lost: bool,
    pub(crate) error: Option<Error>,
}

/// Settings of the heartbeat task.
#[derive(Debug, Clone)]
struct Settings {
    instance_id: Option<String>,
    assignor: Option<String>,
    backoff: Backoff,
}

/// A consumer's membership in one group: the coordinator and the heartbeat task.
/// Owned by the consumer; dropping it stops the task without leaving the group (the
/// coordinator then expires the member when its session times out).
#[derive(Debug)]
pub(crate) struct Membership {
    coordinator: Arc<Coordinator>,
    shared: Arc<Shared>,
    settings: Settings,
    task: Option<JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Membership {
    /// Starts heartbeating: the first heartbeat joins at once.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad group id.
    pub(crate) fn start(
        cluster: Arc<Cluster>,
        config: &ConsumerConfig,
        group_id: &str,
        topics: Vec<String>,
    ) -> Result<Self> {
        let backoff = config.retry_backoff();
        let coordinator = Arc::new(Coordinator::new(group_id, backoff)?);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                member_id: String::new(),
                join_id: new_member_id(&config.client.client_id),
                member_epoch: JOIN_EPOCH,
                topics,
                send_subscription: true,
                target: BTreeSet::new(),
                owned: BTreeSet::new(),
                claimed: BTreeSet::new(),
                lost: false,
                error: None,
                leaving: false,
            }),
            wake_task: Notify::new(),
            wake_consumer: Notify::new(),
        });
        let settings = Settings {
            instance_id: config.group_instance_id.clone(),
            assignor: config.group_assignor.clone(),
            backoff,
        };
        let task = tokio::spawn(heartbeat_loop(
            cluster,
            Arc::clone(&coordinator),
            Arc::clone(&shared),
            settings.clone(),
        ));
        Ok(Self {
            coordinator,
            shared,
            settings,
            task: Some(task),
        })
    }

    pub(crate) fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// The shared state, for waiting on [`Shared::changed`] without borrowing the
    /// consumer.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The member id and epoch to commit with.
    pub(crate) fn member(&self) -> (String, i32) {
        let state = self.shared.state.lock().expect("group lock");
        (state.member_id.clone(), state.member_epoch)
    }

    /// The member id and epoch, unless the member was fenced since the consumer last
    /// dropped its partitions: then what the consumer holds belongs to an older
    /// membership and must not be committed under this one.
    pub(crate) fn member_unless_lost(&self) -> Option<(String, i32)> {
        let state = self.shared.state.lock().expect("group lock");
        (!state.lost).then(|| (state.member_id.clone(), state.member_epoch))
    }

    /// Whether the member was fenced since the last snapshot, clearing the flag: the
    /// caller drops every partition.
    pub(crate) fn take_lost(&self) -> bool {
        std::mem::take(&mut self.shared.state.lock().expect("group lock").lost)
    }

    pub(crate) fn metadata(&self) -> GroupMetadata {
        let (member_id, member_epoch) = self.member();
        GroupMetadata {
            group_id: self.coordinator.group_id().to_owned(),
            member_id,
            member_epoch,
            instance_id: self.settings.instance_id.clone(),
        }
    }

    /// Changes the subscription; the next heartbeat (sent at once) carries it.
    pub(crate) fn set_topics(&self, topics: Vec<String>) {
        let mut state = self.shared.state.lock().expect("group lock");
        if state.topics != topics {
            state.topics = topics;
            state.send_subscription = true;
            self.shared.wake_task.notify_one();
        }
    }

    /// Takes what the consumer must reconcile against (clearing `lost` and `error`).
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Records what the consumer owns now and heartbeats at once, which confirms any
    /// revocation. Ignored if the member was fenced since the last snapshot: the
    /// consumer has to drop everything first.
    pub(crate) fn publish_owned(&self, owned: BTreeSet<TopicPartition>) {
        self.shared.publish_owned(owned);
    }

    /// Sends the leave heartbeat (a static leave with an instance id) and stops the
    /// task, waiting at most until `deadline`.
    ///
    /// # Cancel safety
    /// Not cancel-safe: if dropped, the leave may not be sent; the coordinator then
    /// expires the member when its session times out.
    pub(crate) async fn leave(mut self, deadline: Instant) {
        self.shared.state.lock().expect("group lock").leaving = true;
        self.shared.wake_task.notify_one();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(group = self.coordinator.group_id(), "leave timed out");
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
impl Membership {
    /// Stands in for a heartbeat answer that assigns `target`.
    pub(crate) fn assign_for_test(&self, target: BTreeSet<TopicPartition>) {
        self.shared.state.lock().expect("group lock").target = target;
    }

    /// Stands in for a heartbeat answered with `FencedMemberEpoch`.
    pub(crate) fn fence_for_test(&self) {
        self.shared.fence();
    }

    /// Stands in for the join's answer after a fencing: a new member id and epoch.
    pub(crate) fn rejoin_for_test(&self, member_id: &str, member_epoch: i32) {
        let mut state = self.shared.state.lock().expect("group lock");
        state.member_id = member_id.to_owned();
        state.member_epoch = member_epoch;
    }

    /// What the next heartbeat reports as owned.
    pub(crate) fn owned_for_test(&self) -> BTreeSet<TopicPartition> {
        self.shared.state.lock().expect("group lock").owned.clone()
    }
}

impl Shared {
    /// Resolves when the heartbeat task learned something the consumer must reconcile.
    ///
    /// # Cancel safety
    /// Cancel-safe: a wake-up that arrives while nobody waits is kept for the next call.
    pub(crate) async fn changed(&self) {
        self.wake_consumer.notified().await;
    }

    /// Takes what the consumer must reconcile against (clearing `lost` and `error`),
    /// and remembers the target as claimed until the consumer's next snapshot.
    fn snapshot(&self) -> Snapshot {
        let mut state = self.state.lock().expect("group lock");
        state.claimed = state.target.clone();
        Snapshot {
            target: state.target.clone(),
            lost: std::mem::take(&mut state.lost),
            error: state.error.take(),
        }
    }

    fn publish_owned(&self, owned: BTreeSet<TopicPartition>) {
        let mut state = self.state.lock().expect("group lock");
        if !state.lost && state.owned != owned {
            state.owned = owned;
            self.wake_task.notify_one();
        }
    }

    /// The next heartbeat, and whether it carries the subscription.
    fn heartbeat_request(&self, group_id: &str, settings: &Settings) -> (Request, bool) {
        let mut state = self.state.lock().expect("group lock");
        let carry = state.send_subscription || state.member_epoch == JOIN_EPOCH;
        state.send_subscription = false;
        let request = Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
            group_id: group_id.to_owned(),
            member_id: if state.member_id.is_empty() {
                state.join_id.clone()
            } else {
                state.member_id.clone()
            },
            member_epoch: state.member_epoch,
            instance_id: settings.instance_id.clone(),
            subscribed_topics: carry.then(|| state.topics.clone()),
            assignor: settings.assignor.clone().filter(|_| carry),
            // Sent every time, although the coordinator accepts null for "unchanged":
            // a heartbeat whose answer was lost must not leave it guessing.
            owned_partitions: Some(to_wire(&state.reported())),
            leaving_epoch: 0,
        });
        (request, carry)
    }

    /// Takes in a heartbeat's answer; returns when to heartbeat next.
    fn apply(&self, response: ConsumerGroupHeartbeatResponse) -> Duration {
        let mut state = self.state.lock().expect("group lock");
        state.member_id = response.member_id;
        state.member_epoch = response.member_epoch;
        if let Some(assignment) = response.assignment {
            let target = from_wire(&assignment);
            if target != state.target {
                state.target = target;
                self.wake_consumer.notify_one();
            }
        }
        Duration::from_millis(
            u64::from(response.heartbeat_interval_ms).clamp(1, HEARTBEAT_INTERVAL_MS_MAX),
        )
    }

    /// The member lost its partitions: rejoin from scratch, and make the consumer drop
    /// them without committing.
    fn fence(&self) {
        let mut state = self.state.lock().expect("group lock");
        state.member_id.clear();
        state.member_epoch = JOIN_EPOCH;
        state.target.clear();
        state.owned.clear();
        state.claimed.clear();
        state.lost = true;
        state.send_subscription = true;
        self.wake_consumer.notify_one();
    }

    fn report(&self, error: Error) {
        self.state.lock().expect("group lock").error = Some(error);
        self.wake_consumer.notify_one();
    }
}

/// Heartbeats until the consumer leaves: on the coordinator's interval, at once when
/// woken, with backoff after errors, and by rejoining after a fencing.
async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    coordinator: Arc<Coordinator>,
    shared: Arc<Shared>,
    settings: Settings,
) {
    let mut next_at = Instant::now();
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_at) => {}
            () = shared.wake_task.notified() => {}
        }
        if shared.state.lock().expect("group lock").leaving {
            send_leave(&cluster, &coordinator, &shared, &settings).await;
            return;
        }
        let (request, carried_subscription) =
            shared.heartbeat_request(coordinator.group_id(), &settings);
        let joining = matches!(
            &request,
            Request::ConsumerGroupHeartbeat(heartbeat) if heartbeat.member_epoch == JOIN_EPOCH
        );
        let result = match coordinator.call_once(&cluster, &request).await {
            Ok(Response::ConsumerGroupHeartbeat(response)) => Ok(response),
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(error),
        };
        let error = match result {
            Ok(response) => {
                failures = 0;
                next_at = Instant::now() + shared.apply(response);
                continue;
            }
            Err(error) => error,
        };
        if carried_subscription {
            shared.state.lock().expect("group lock").send_subscription = true;
        }
        if error.is_fenced() && !joining {
            tracing::info!(group = coordinator.group_id(), %error, "member fenced; rejoining");
            shared.fence();
            next_at = Instant::now();
            continue;
        }
        failures = failures.saturating_add(1);
        let wait = settings.backoff.delay(failures);
        if error.is_retriable() {
            tracing::debug!(group = coordinator.group_id(), %error, ?wait, "heartbeat failed");
        } else {
            tracing::warn!(group = coordinator.group_id(), %error, ?wait, "heartbeat rejected");
            shared.report(coordinator.error(error));
        }
        next_at = Instant::now() + wait;
    }
}

/// A member id unlikely to collide with any other: the client id and 128 random bits.
fn new_member_id(client_id: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // Each `RandomState` is keyed from the OS's randomness (per thread, then stepped).
    let mut halves = [0u64; 2];
    for half in &mut halves {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        *half = hasher.finish();
    }
    let prefix: String = client_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(64)
        .collect();
    format!("{prefix}-{:016x}{:016x}", halves[0], halves[1])
}

/// Leaves the group: epoch -1, or -2 for a static member, which keeps its partitions
/// until its session times out so that its restarted successor gets them back. The leave
/// carries the member's epoch, which the coordinator requires.
async fn send_leave(
    cluster: &Cluster,
    coordinator: &Coordinator,
    shared: &Shared,
    settings: &Settings,
) {
    let (member_id, leaving_epoch) = {
        let state = shared.state.lock().expect("group lock");
        (state.member_id.clone(), state.member_epoch)
    };
    if member_id.is_empty() {
        return; // never joined, or fenced: nothing to leave
    }
    let member_epoch = if settings.instance_id.is_some() {
        STATIC_LEAVE_EPOCH
    } else {
        LEAVE_EPOCH
    };
    let request = Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: coordinator.group_id().to_owned(),
        member_id,
        member_epoch,
        instance_id: settings.instance_id.clone(),
        subscribed_topics: None,
        assignor: None,
        owned_partitions: None,
        leaving_epoch,
    });
    match coordinator.call(cluster, &request).await {
        Ok(_) => tracing::debug!(group = coordinator.group_id(), "left the group"),
        Err(error) => tracing::warn!(group = coordinator.group_id(), %error, "leave failed"),
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::TopicPartitions;

    use super::*;

    fn tps(list: &[(&str, u32)]) -> BTreeSet<TopicPartition> {
        list.iter()
            .map(|(topic, partition)| TopicPartition::new(*topic, *partition))
            .collect()
    }

    fn shared() -> Shared {
        Shared {
            state: Mutex::new(State {
                member_id: String::new(),
                join_id: "chosen".into(),
                member_epoch: JOIN_EPOCH,
                topics: vec!["a".into()],
                send_subscription: true,
                target: BTreeSet::new(),
                owned: BTreeSet::new(),
                claimed: BTreeSet::new(),
                lost: false,
                error: None,
                leaving: false,
            }),
            wake_task: Notify::new(),
            wake_consumer: Notify::new(),
        }
    }

    fn settings() -> Settings {
        Settings {
            instance_id: Some("host-1".into()),
            assignor: Some("range".into()),
            backoff: Backoff::new(100, 1_000),
        }
    }

    fn heartbeat(request: Request) -> ConsumerGroupHeartbeatRequest {
        match request {
            Request::ConsumerGroupHeartbeat(heartbeat) => heartbeat,
            other => panic!("not a heartbeat: {other:?}"),
        }
    }

    #[test]
    fn reconcile_splits_revoked_and_added() {
        let owned = tps(&[("a", 0), ("a", 1), ("b", 0)]);
        let assignment = tps(&[("a", 1), ("b", 0), ("b", 1), ("c", 0)]);
        let result = reconcile(&owned, &assignment);
        assert_eq!(result.revoked, vec![TopicPartition::new("a", 0)]);
        assert_eq!(
            result.added,
            vec![TopicPartition::new("b", 1), TopicPartition::new("c", 0)]
        );
    }

    #[test]
    fn reconcile_of_equal_sets_changes_nothing() {
        let owned = tps(&[("a", 0), ("a", 1)]);
        assert_eq!(reconcile(&owned, &owned.clone()), Reconciliation::default());
        assert_eq!(
            reconcile(&BTreeSet::new(), &BTreeSet::new()),
            Reconciliation::default()
        );
    }

    #[test]
    fn chosen_member_ids_differ_and_keep_the_client_id() {
        let (a, b) = (new_member_id("app 1"), new_member_id("app 1"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("app1-") && a.len() == "app1-".len() + 32,
            "{a}"
        );
    }

    #[test]
    fn an_empty_assignment_revokes_everything() {
        let owned = tps(&[("a", 0), ("b", 3)]);
        let result = reconcile(&owned, &BTreeSet::new());
        assert_eq!(result.revoked, owned.into_iter().collect::<Vec<_>>());
        assert!(result.added.is_empty());
    }

    #[test]
    fn a_join_carries_the_subscription_and_later_heartbeats_do_not() {
        let shared = shared();
        let (request, carried) = shared.heartbeat_request("g", &settings());
        let join = heartbeat(request);
        assert!(carried);
        assert_eq!(
            (join.member_id.as_str(), join.member_epoch),
            ("chosen", JOIN_EPOCH)
        );
        assert_eq!(join.subscribed_topics, Some(vec!["a".to_owned()]));
        assert_eq!(join.assignor.as_deref(), Some("range"));
        assert_eq!(join.instance_id.as_deref(), Some("host-1"));
        assert_eq!(join.owned_partitions, Some(Vec::new()));

        let interval = shared.apply(ConsumerGroupHeartbeatResponse {
            member_id: "m1".into(),
            member_epoch: 3,
            heartbeat_interval_ms: 250,
            assignment: Some(vec![TopicPartitions {
                topic: "a".into(),
                partitions: vec![0, 1],
            }]),
        });
        assert_eq!(interval, Duration::from_millis(250));
        let (request, carried) = shared.heartbeat_request("g", &settings());
        let next = heartbeat(request);
        assert!(!carried);
        assert_eq!((next.member_id.as_str(), next.member_epoch), ("m1", 3));
        assert_eq!(next.subscribed_topics, None);
        assert_eq!(next.assignor, None);
    }

    #[test]
    fn a_null_assignment_keeps_the_target() {
        let shared = shared();
        let assigned = |assignment| ConsumerGroupHeartbeatResponse {
            member_id: "m1".into(),
            member_epoch: 1,
            heartbeat_interval_ms: 0,
            assignment,
        };
        shared.apply(assigned(Some(vec![TopicPartitions {
            topic: "a".into(),
            partitions: vec![2],
        }])));
        // A zero interval is clamped: the task never spins.
        assert_eq!(shared.apply(assigned(None)), Duration::from_millis(1));
        assert_eq!(shared.state.lock().unwrap().target, tps(&[("a", 2)]));
    }

    fn assignment(member_epoch: i32, partitions: Vec<u32>) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse {
            member_id: "m1".into(),
            member_epoch,
            heartbeat_interval_ms: 100,
            assignment: Some(vec![TopicPartitions {
                topic: "a".into(),
                partitions,
            }]),
        }
    }

    fn reported(shared: &Shared) -> BTreeSet<TopicPartition> {
        let (request, _) = shared.heartbeat_request("g", &settings());
        from_wire(&heartbeat(request).owned_partitions.expect("always sent"))
    }

    #[test]
    fn a_stale_target_after_a_lost_reply_is_still_reported_as_owned() {
        let shared = shared();
        // The coordinator grants a/0; the consumer has not reconciled yet.
        shared.apply(assignment(1, vec![0]));
        assert_eq!(reported(&shared), tps(&[("a", 0)]));
        // The coordinator then revokes a/0, but that reply is lost: the target stays.
        // The consumer may still start a/0 from it, so the heartbeat must not confirm
        // the revocation by leaving a/0 out.
        assert_eq!(reported(&shared), tps(&[("a", 0)]));
        // The retried heartbeat's reply arrives: a/0 is neither owned nor targeted.
        shared.apply(assignment(2, Vec::new()));
        assert_eq!(reported(&shared), BTreeSet::new());
    }

    #[test]
    fn a_revocation_is_confirmed_only_after_the_consumer_reconciled() {
        let shared = shared();
        shared.apply(assignment(1, vec![0, 1]));
        // The consumer takes the target and starts a/0 and a/1 ...
        assert_eq!(shared.snapshot().target, tps(&[("a", 0), ("a", 1)]));
        // ... while the task learns a/1 is revoked, before the consumer published.
        shared.apply(assignment(2, vec![0]));
        assert_eq!(
            reported(&shared),
            tps(&[("a", 0), ("a", 1)]),
            "the consumer may own a/1 by now"
        );
        shared.publish_owned(tps(&[("a", 0), ("a", 1)]));
        assert_eq!(reported(&shared), tps(&[("a", 0), ("a", 1)]));
        // It reconciles against the new target and gives a/1 up.
        assert_eq!(shared.snapshot().target, tps(&[("a", 0)]));
        shared.publish_owned(tps(&[("a", 0)]));
        assert_eq!(reported(&shared), tps(&[("a", 0)]));
    }

    #[test]
    fn fencing_rejoins_from_scratch_and_marks_partitions_lost() {
        let shared = shared();
        {
            let mut state = shared.state.lock().unwrap();
            state.member_id = "m1".into();
            state.member_epoch = 7;
            state.send_subscription = false;
            state.target = tps(&[("a", 0)]);
            state.owned = tps(&[("a", 0)]);
            state.claimed = tps(&[("a", 0)]);
        }
        shared.fence();
        let (request, carried) = shared.heartbeat_request("g", &settings());
        let join = heartbeat(request);
        assert!(carried);
        assert_eq!(
            (join.member_id.as_str(), join.member_epoch),
            ("chosen", JOIN_EPOCH)
        );
        assert_eq!(join.owned_partitions, Some(Vec::new()));
        let state = shared.state.lock().unwrap();
        assert!(state.lost && state.target.is_empty());
    }
}
