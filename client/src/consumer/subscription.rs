//! A [`Consumer`] in a consumer group: subscribing, reconciling the group's assignment
//! with the fetch state, rebalance callbacks, commits, leaving.
//!
//! The heartbeat task ([`crate::group`]) keeps the membership alive on its own. All of
//! what follows runs on the application's task, inside `poll` / `recv` / `close`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared as SharedFuture};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use super::{Consumer, PartitionState, not_assigned, retain_buffered};
use crate::cluster::Cluster;
use crate::coordinator::Coordinator;
use crate::error::{Error, Result};
use crate::group::{GroupMetadata, Membership, RebalanceListener, Shared, reconcile};
use crate::record::TopicPartition;

/// The consumer's side of its group membership.
#[derive(Debug)]
pub(super) struct GroupState {
    membership: Membership,
    /// Partitions taken away whose revocation is not confirmed yet, with their
    /// positions: they are committed (with auto-commit) and `on_revoked` runs before
    /// the consumer publishes that it no longer owns them. Kept here so that a `poll`
    /// dropped halfway is finished by the next one.
    revoking: BTreeMap<TopicPartition, Option<u64>>,
    /// The owned partitions changed since they were last published to the task.
    publish: bool,
    /// How often the consumer dropped everything after a fencing; a reconciliation
    /// whose target predates a fencing stops there.
    losses: u64,
    next_auto_commit_at: Instant,
    /// The last background commit (auto-commit or `commit_async`) started. Every later
    /// commit waits for it first, so one consumer's commits apply in order.
    last_commit: Option<InFlightCommit>,
}

/// Who a commit is sent as: the coordinator, the member id and the member epoch.
type CommitTarget = (Arc<Coordinator>, String, i32);

impl GroupState {
    pub(super) fn shared(&self) -> Arc<Shared> {
        self.membership.shared()
    }

    fn commit_target(&self) -> CommitTarget {
        let (member_id, member_epoch) = self.membership.member();
        (
            Arc::clone(self.membership.coordinator()),
            member_id,
            member_epoch,
        )
    }

    /// Starts committing `offsets` in the background, after the previous background
    /// commit (waiting for it at most `bound`), and makes this one the commit later
    /// ones wait for.
    fn spawn_commit(
        &mut self,
        cluster: Arc<Cluster>,
        (coordinator, member_id, member_epoch): CommitTarget,
        offsets: BTreeMap<TopicPartition, u64>,
        bound: Duration,
        what: &'static str,
    ) -> JoinHandle<Result<()>> {
        let previous = self.last_commit.take();
        // Dropped when the task ends, however it ends (an abort included).
        let (done_sender, done) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _done_sender = done_sender;
            if let Some(previous) = previous {
                previous.settle(Instant::now() + bound).await;
            }
            let result = coordinator
                .commit(&cluster, &member_id, member_epoch, &offsets)
                .await;
            if let Err(error) = &result {
                tracing::warn!(group = coordinator.group_id(), %error, "{what} failed");
            }
            result
        });
        self.last_commit = Some(InFlightCommit {
            done: done.map(|_| ()).boxed().shared(),
            abort: task.abort_handle(),
        });
        task
    }
}

/// A background commit that later commits of the same consumer wait for.
struct InFlightCommit {
    /// Resolves when the commit's task ended.
    done: SharedFuture<BoxFuture<'static, ()>>,
    abort: AbortHandle,
}

impl std::fmt::Debug for InFlightCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightCommit")
            .field("finished", &self.abort.is_finished())
            .finish_non_exhaustive()
    }
}

impl InFlightCommit {
    /// Waits for the commit to end, until `deadline`. Past it the commit is abandoned
    /// (no further retries), so it cannot land after the commit that follows; a request
    /// already written goes ahead of the next one on the same connection.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    async fn settle(&self, deadline: Instant) {
        if tokio::time::timeout_at(deadline, self.done.clone())
            .await
            .is_err()
        {
            tracing::warn!("an earlier commit is still unanswered; abandoning it");
            self.abort.abort();
        }
    }
}

/// The application's rebalance listener, if it set one.
#[derive(Default)]
pub(super) struct Listener(Option<Box<dyn RebalanceListener>>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Listener").field(&self.0.is_some()).finish()
    }
}

impl Listener {
    fn assigned(&mut self, partitions: &[TopicPartition]) {
        if let Some(listener) = &mut self.0
            && !partitions.is_empty()
        {
            listener.on_assigned(partitions);
        }
    }

    fn revoked(&mut self, partitions: &[TopicPartition]) {
        if let Some(listener) = &mut self.0
            && !partitions.is_empty()
        {
            listener.on_revoked(partitions);
        }
    }

    fn lost(&mut self, partitions: &[TopicPartition]) {
        if let Some(listener) = &mut self.0
            && !partitions.is_empty()
        {
            listener.on_lost(partitions);
        }
    }
}

/// Resolves when the group has news for `poll`; never without a group.
pub(super) async fn changed(group: Option<&Shared>) {
    match group {
        Some(shared) => shared.changed().await,
        None => std::future::pending().await,
    }
}

/// An offset commit running in the background, from [`Consumer::commit_async`]. Await
/// it for the outcome, or drop it: the commit goes on either way, and a failure is also
/// logged (at `warn`).
#[derive(Debug)]
pub struct CommitHandle {
    task: JoinHandle<Result<()>>,
}

impl Future for CommitHandle {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => Err(Error::Disconnected {
                    address: String::new(),
                    reason: "the runtime shut down before the commit finished".into(),
                }),
            })
    }
}

impl Consumer {
    /// Joins consumer group `group_id` with a subscription to `topics`: from now on
    /// the group's coordinator decides which of their partitions this consumer reads.
    /// Returns at once; a background task joins, heartbeats (so the session stays alive
    /// however rarely the application polls), and rejoins after losing its membership.
    /// The partitions themselves change inside [`poll`](Self::poll) (see there).
    /// Subscribing again to the same group replaces the topics.
    ///
    /// New partitions start at the group's committed offset, or per
    /// `auto_offset_reset` where it has none. Delivery is at-least-once: with
    /// `enable_auto_commit`, positions (the offsets after records already returned by
    /// `poll`) are committed every `auto_commit_interval_ms`, when a partition is
    /// revoked and on [`close`](Self::close), so records are delivered again only after
    /// a crash or a lost membership. Without it, commit with
    /// [`commit_sync`](Self::commit_sync), [`commit_async`](Self::commit_async) or
    /// [`commit_offsets`](Self::commit_offsets) after processing; nothing is committed
    /// on revocation, so records returned since the last commit go to the next owner
    /// again.
    ///
    /// # Errors
    /// [`Error::SubscribeConflict`] if partitions are assigned by hand (call
    /// `assign(&[])` first) or the consumer is in another group;
    /// [`Error::InvalidConfig`] without topics or for a group id that is empty or over
    /// 255 bytes.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn subscribe<I>(&mut self, topics: I, group_id: &str) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return Err(Error::InvalidConfig(
                "subscribe needs at least one topic".into(),
            ));
        }
        if let Some(group) = &self.group {
            let metadata = group.membership.metadata();
            if metadata.group_id != group_id {
                return Err(Error::SubscribeConflict {
                    reason: format!(
                        "already in group '{}'; unsubscribe first",
                        metadata.group_id
                    ),
                });
            }
            group.membership.set_topics(topics);
            return Ok(());
        }
        if !self.partitions.is_empty() {
            return Err(Error::SubscribeConflict {
                reason: "partitions are assigned by hand; call assign(&[]) first".into(),
            });
        }
        let membership =
            Membership::start(Arc::clone(&self.cluster), &self.config, group_id, topics)?;
        self.group = Some(GroupState {
            membership,
            revoking: BTreeMap::new(),
            publish: false,
            losses: 0,
            next_auto_commit_at: Instant::now() + self.auto_commit_interval(),
            last_commit: None,
        });
        Ok(())
    }

    /// Sets the listener told about partitions the group assigns, revokes or loses,
    /// replacing any earlier one. Set it before [`subscribe`](Self::subscribe) to hear
    /// about the first assignment.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Listener(Some(Box::new(listener)));
    }

    /// The group, member id and epoch while subscribed; `None` otherwise.
    pub fn group_metadata(&self) -> Option<GroupMetadata> {
        self.group.as_ref().map(|group| group.membership.metadata())
    }

    /// Commits the positions of every owned partition (the offsets after the records
    /// `poll` returned) and waits for the answer. Waits first for the background
    /// commit started before it (see [`commit_async`](Self::commit_async)). If the
    /// member was fenced since the last `poll`, its partitions are dropped first
    /// (`on_lost`): nothing of an earlier membership is committed under a later one.
    ///
    /// # Errors
    /// [`Error::NotSubscribed`]; [`Error::MemberFenced`] if the member lost its
    /// partitions (it rejoins by itself); `PartitionNotAssigned` for a partition being
    /// revoked meanwhile; connection errors after retries.
    ///
    /// # Cancel safety
    /// Not cancel-safe: the commit may be applied even if the future is dropped.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let target = self.prepare_commit().await?;
        let offsets = self.positions();
        target
            .0
            .commit(&self.cluster, &target.1, target.2, &offsets)
            .await
    }

    /// Commits explicit offsets: each the offset of the next record to read (the last
    /// processed offset plus one), for partitions this member owns. Ordered after
    /// earlier commits and checked against fencing as
    /// [`commit_sync`](Self::commit_sync).
    ///
    /// # Errors
    /// [`Error::NotAssigned`] (nothing is committed) for a partition the consumer does
    /// not own, e.g. one lost to a fencing; otherwise as for
    /// [`commit_sync`](Self::commit_sync).
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        let target = self.prepare_commit().await?;
        if let Some((tp, _)) = offsets
            .iter()
            .find(|(tp, _)| !self.partitions.contains_key(tp))
        {
            return Err(not_assigned(tp));
        }
        let offsets: BTreeMap<TopicPartition, u64> = offsets.iter().cloned().collect();
        target
            .0
            .commit(&self.cluster, &target.1, target.2, &offsets)
            .await
    }

    /// Starts committing the positions of every owned partition in the background and
    /// returns at once, so it never holds up `poll`. Await the handle for the outcome
    /// or drop it; failures are logged either way.
    ///
    /// Commits of one consumer are sent in the order they were started: each background
    /// commit, and each `commit_sync`, `commit_offsets`, commit on revocation and final
    /// commit of [`close`](Self::close), first waits for the background commit started
    /// before it. A wait lasts at most `request_timeout_ms`; a commit still unanswered
    /// then is abandoned (not retried again), so an older commit never overwrites a
    /// newer one. If the member was fenced since the last `poll`, its partitions are
    /// dropped first (`on_lost`) and nothing is committed for them.
    pub fn commit_async(&mut self) -> CommitHandle {
        let Some(target) = self.commit_member() else {
            return CommitHandle {
                task: tokio::spawn(async { Err(Error::NotSubscribed) }),
            };
        };
        let offsets = self.positions();
        let bound = self.config.client.request_timeout();
        let cluster = Arc::clone(&self.cluster);
        let group = self.group.as_mut().expect("subscribed");
        let task = group.spawn_commit(cluster, target, offsets, bound, "async commit");
        CommitHandle { task }
    }

    /// Leaves the group: with auto-commit, commits the positions of the owned
    /// partitions (after the background commit in flight, if any), calls `on_revoked`
    /// for them, sends the leave heartbeat (a static member's leave keeps its
    /// partitions until its session times out) and stops the heartbeat task. The
    /// consumer is then unassigned and may `assign` or `subscribe` again. Does nothing
    /// if not subscribed.
    ///
    /// All of it takes at most `request_timeout_ms`, however the coordinator behaves:
    /// past that the commit is given up (and reported as
    /// [`Error::RequestTimedOut`]) and the leave is not waited for (logged at `warn`);
    /// the coordinator then expires the member when its session times out.
    ///
    /// # Errors
    /// The final commit's error, or [`Error::RequestTimedOut`] (the group is left
    /// anyway).
    ///
    /// # Cancel safety
    /// Not cancel-safe: if dropped, the membership ends without a leave and the
    /// coordinator expires it when its session times out.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let timeout = self.config.client.request_timeout();
        let deadline = Instant::now() + timeout;
        self.settle_commits(deadline).await;
        // Drops the partitions (`on_lost`) if a fencing took them.
        let target = self.commit_member().expect("subscribed");
        let mut group = self.group.take().expect("subscribed");
        let mut offsets = BTreeMap::new();
        let mut owned = Vec::new();
        let revoking = std::mem::take(&mut group.revoking);
        let current = self
            .partitions
            .iter()
            .map(|(tp, state)| (tp, state.position));
        for (tp, position) in revoking
            .iter()
            .map(|(tp, position)| (tp, *position))
            .chain(current)
        {
            owned.push(tp.clone());
            if let Some(position) = position {
                offsets.insert(tp.clone(), position);
            }
        }
        owned.sort();
        self.partitions.clear();
        self.buffer.clear();
        self.buffered_bytes = 0;
        self.decoding.clear();
        let mut result = Ok(());
        if self.config.enable_auto_commit {
            let (coordinator, member_id, member_epoch) = target;
            let commit = coordinator.commit(&self.cluster, &member_id, member_epoch, &offsets);
            result = tokio::time::timeout_at(deadline, commit)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::RequestTimedOut {
                        address: format!("the coordinator of group '{}'", coordinator.group_id()),
                        api: "OffsetCommit",
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    })
                });
        }
        self.listener.revoked(&owned);
        group.membership.leave(deadline).await;
        result
    }

    /// [`unsubscribe`](Self::unsubscribe)s and drops the consumer, within
    /// `request_timeout_ms` in all.
    ///
    /// # Errors
    /// As for [`unsubscribe`](Self::unsubscribe).
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn close(mut self) -> Result<()> {
        self.unsubscribe().await
    }

    /// Waits (until `deadline`) for the background commit in flight, then returns who to
    /// commit as, after dropping partitions a fencing took.
    ///
    /// # Errors
    /// [`Error::NotSubscribed`].
    ///
    /// # Cancel safety
    /// Cancel-safe.
    async fn prepare_commit(&mut self) -> Result<CommitTarget> {
        if self.group.is_none() {
            return Err(Error::NotSubscribed);
        }
        let deadline = Instant::now() + self.config.client.request_timeout();
        self.settle_commits(deadline).await;
        self.commit_member().ok_or(Error::NotSubscribed)
    }

    /// Waits for the last background commit to end, until `deadline` (then abandons it).
    ///
    /// # Cancel safety
    /// Cancel-safe: the commit stays the one to wait for until it ended.
    async fn settle_commits(&mut self, deadline: Instant) {
        let Some(last) = self
            .group
            .as_ref()
            .and_then(|group| group.last_commit.as_ref())
        else {
            return;
        };
        last.settle(deadline).await;
        if let Some(group) = &mut self.group {
            group.last_commit = None;
        }
    }

    /// Who to commit as. If the member was fenced since the consumer last dropped its
    /// partitions, they are dropped now (`on_lost`): their positions belong to the old
    /// membership and must not be committed under the new member id and epoch. The
    /// id and epoch are read together with the fencing flag, so what `positions` holds
    /// afterwards is owned under them (or under an older epoch, which the coordinator
    /// fences). `None` when not subscribed.
    fn commit_member(&mut self) -> Option<CommitTarget> {
        let group = self.group.as_ref()?;
        if let Some((member_id, member_epoch)) = group.membership.member_unless_lost() {
            return Some((
                Arc::clone(group.membership.coordinator()),
                member_id,
                member_epoch,
            ));
        }
        group.membership.take_lost();
        self.lose_all();
        // Nothing is owned now, so whatever epoch this reads commits nothing stale.
        self.group.as_ref().map(GroupState::commit_target)
    }

    /// Positions of the owned partitions that have one.
    fn positions(&self) -> BTreeMap<TopicPartition, u64> {
        self.partitions
            .iter()
            .filter_map(|(tp, state)| state.position.map(|position| (tp.clone(), position)))
            .collect()
    }

    fn auto_commit_interval(&self) -> Duration {
        Duration::from_millis(self.config.auto_commit_interval_ms)
    }

    /// Applies what the heartbeat task learned: a fencing (drop everything, `on_lost`),
    /// revocations (drop, commit, `on_revoked`), new partitions (`on_assigned`), then
    /// publishes what the consumer owns so the task confirms it.
    ///
    /// # Cancel safety
    /// Cancel-safe: a revocation interrupted during its commit is finished by the next
    /// call, and the owned partitions are published only after it is.
    pub(super) async fn reconcile_group(&mut self) {
        let Some(group) = &mut self.group else {
            return;
        };
        let snapshot = group.membership.snapshot();
        if let Some(error) = snapshot.error {
            self.errors.push_back(error);
        }
        if snapshot.lost {
            self.lose_all();
        }
        let losses = self.group.as_ref().expect("subscribed").losses;
        let revoked = reconcile(self.partitions.keys(), &snapshot.target).revoked;
        self.start_revoking(&revoked);
        self.finish_revoking().await;
        if self.group.as_ref().expect("subscribed").losses != losses {
            // Fenced during the commit: the snapshot's target is stale. The fencing's
            // wake-up makes `poll` reconcile again against the new membership.
            return;
        }
        let added = reconcile(self.partitions.keys(), &snapshot.target).added;
        self.add_partitions(&added);
        let group = self.group.as_mut().expect("subscribed");
        if std::mem::take(&mut group.publish) {
            group
                .membership
                .publish_owned(self.partitions.keys().cloned().collect());
        }
    }

    /// The member was fenced: its partitions belong to others already, so they are
    /// dropped without a commit.
    fn lose_all(&mut self) {
        let group = self.group.as_mut().expect("subscribed");
        let mut lost: BTreeSet<TopicPartition> =
            std::mem::take(&mut group.revoking).into_keys().collect();
        lost.extend(std::mem::take(&mut self.partitions).into_keys());
        group.publish = true;
        group.losses += 1;
        self.buffer.clear();
        self.buffered_bytes = 0;
        self.decoding.clear();
        tracing::info!(partitions = lost.len(), "partitions lost");
        self.listener.lost(&lost.into_iter().collect::<Vec<_>>());
    }

    /// Stops fetching `revoked` and drops their buffered records at once, remembering
    /// their positions for the commit.
    fn start_revoking(&mut self, revoked: &[TopicPartition]) {
        if revoked.is_empty() {
            return;
        }
        let group = self.group.as_mut().expect("subscribed");
        for tp in revoked {
            let state = self
                .partitions
                .remove(tp)
                .expect("revoked partitions are owned");
            group.revoking.insert(tp.clone(), state.position);
        }
        retain_buffered(&mut self.buffer, |record| {
            !revoked
                .iter()
                .any(|tp| tp.partition == record.partition && *tp.topic == *record.topic)
        });
        self.recount_buffer();
    }

    /// Commits the revoked partitions' positions (with auto-commit) and calls
    /// `on_revoked`. A failed commit is logged and the revocation confirmed anyway:
    /// holding the partitions would stall the group, and at worst their records since
    /// the last commit are delivered again.
    async fn finish_revoking(&mut self) {
        let Some(group) = &self.group else {
            return;
        };
        if group.revoking.is_empty() {
            return;
        }
        if self.config.enable_auto_commit {
            self.settle_commits(Instant::now() + self.config.client.request_timeout())
                .await;
            // A fencing meanwhile turns the revocation into a loss: nothing to commit.
            let (coordinator, member_id, member_epoch) = self.commit_member().expect("subscribed");
            let group = self.group.as_ref().expect("subscribed");
            let offsets: BTreeMap<TopicPartition, u64> = group
                .revoking
                .iter()
                .filter_map(|(tp, position)| position.map(|position| (tp.clone(), position)))
                .collect();
            if let Err(error) = coordinator
                .commit(&self.cluster, &member_id, member_epoch, &offsets)
                .await
            {
                tracing::warn!(group = coordinator.group_id(), %error, "commit on revoke failed");
            }
        }
        let group = self.group.as_mut().expect("subscribed");
        let revoked: Vec<TopicPartition> =
            std::mem::take(&mut group.revoking).into_keys().collect();
        group.publish = true;
        self.listener.revoked(&revoked);
    }

    /// Takes on partitions the group granted; their positions come from the committed
    /// offsets, looked up before their first fetch.
    fn add_partitions(&mut self, added: &[TopicPartition]) {
        if added.is_empty() {
            return;
        }
        for tp in added {
            self.epochs += 1;
            let mut state = PartitionState::new(self.epochs);
            state.committed_pending = true;
            self.partitions.insert(tp.clone(), state);
        }
        self.group.as_mut().expect("subscribed").publish = true;
        self.listener.assigned(added);
    }

    /// Positions partitions the group just granted at their committed offsets; those
    /// without one are left to `auto_offset_reset`. A failed lookup is retried after
    /// the retry backoff.
    pub(super) async fn lookup_committed(&mut self) {
        let Some(group) = &self.group else {
            return;
        };
        let now = Instant::now();
        let pending: BTreeSet<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| {
                state.committed_pending && state.retry_at.is_none_or(|at| at <= now)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if pending.is_empty() {
            return;
        }
        let coordinator = Arc::clone(group.membership.coordinator());
        match coordinator
            .fetch_offsets(&self.cluster, Some(&pending))
            .await
        {
            Ok(committed) => {
                for tp in &pending {
                    let state = self
                        .partitions
                        .get_mut(tp)
                        .expect("pending partitions are owned");
                    state.committed_pending = false;
                    state.retry_at = None;
                    state.failures = 0;
                    if let Some(offset) = committed.get(tp) {
                        self.epochs += 1;
                        state.position = Some(*offset);
                        state.fetch_offset = *offset;
                        state.last_fetched_epoch = None;
                        state.epoch = self.epochs;
                    }
                }
            }
            Err(error) => {
                let backoff = self.config.retry_backoff();
                for tp in &pending {
                    self.partitions
                        .get_mut(tp)
                        .expect("pending partitions are owned")
                        .back_off(backoff, now);
                }
                if error.is_retriable() || error.is_fenced() {
                    tracing::debug!(%error, "committed offset lookup will be retried");
                } else {
                    self.errors.push_back(error);
                }
            }
        }
    }

    /// Every `auto_commit_interval_ms`, starts a background commit of the positions,
    /// unless the previous background commit is still running.
    pub(super) fn maybe_auto_commit(&mut self) {
        let now = Instant::now();
        let due = self.config.enable_auto_commit
            && self.group.as_ref().is_some_and(|group| {
                now >= group.next_auto_commit_at
                    && group
                        .last_commit
                        .as_ref()
                        .is_none_or(|last| last.abort.is_finished())
            });
        if !due {
            return;
        }
        let interval = self.auto_commit_interval();
        let target = self.commit_member().expect("subscribed");
        let positions = self.positions();
        let bound = self.config.client.request_timeout();
        let cluster = Arc::clone(&self.cluster);
        let group = self.group.as_mut().expect("subscribed");
        group.next_auto_commit_at = now + interval;
        if positions.is_empty() {
            return;
        }
        // The handle is not needed: `last_commit` keeps what later commits wait for.
        drop(group.spawn_commit(cluster, target, positions, bound, "auto-commit"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::ConsumerConfig;
    use crate::consumer::tests::record;
    use crate::test_support::hung_broker;

    /// Records callbacks as `+t-0`, `-t-0`, `!t-0`.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Recorder {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl RebalanceListener for Recorder {
        fn on_assigned(&mut self, partitions: &[TopicPartition]) {
            let mut log = self.0.lock().unwrap();
            log.extend(partitions.iter().map(|tp| format!("+{tp}")));
        }
        fn on_revoked(&mut self, partitions: &[TopicPartition]) {
            let mut log = self.0.lock().unwrap();
            log.extend(partitions.iter().map(|tp| format!("-{tp}")));
        }
        fn on_lost(&mut self, partitions: &[TopicPartition]) {
            let mut log = self.0.lock().unwrap();
            log.extend(partitions.iter().map(|tp| format!("!{tp}")));
        }
    }

    fn tps(partitions: &[u32]) -> BTreeSet<TopicPartition> {
        partitions
            .iter()
            .map(|partition| TopicPartition::new("t", *partition))
            .collect()
    }

    /// A subscribed consumer whose heartbeat task cannot reach any broker, so the
    /// test plays the coordinator. Manual commit: reconciliation does no I/O.
    fn subscribed() -> (Consumer, Recorder) {
        let mut consumer = Consumer::new(ConsumerConfig {
            enable_auto_commit: false,
            ..ConsumerConfig::new("127.0.0.1:1")
        })
        .unwrap();
        let recorder = Recorder::default();
        consumer.set_rebalance_listener(recorder.clone());
        consumer.subscribe(["t"], "g").unwrap();
        (consumer, recorder)
    }

    fn membership(consumer: &Consumer) -> &Membership {
        &consumer.group.as_ref().unwrap().membership
    }

    #[tokio::test]
    async fn revoked_partitions_stop_at_once_and_their_records_are_never_returned() {
        let (mut consumer, recorder) = subscribed();
        membership(&consumer).assign_for_test(tps(&[0, 1]));
        consumer.reconcile_group().await;
        assert_eq!(recorder.take(), ["+t-0", "+t-1"]);
        assert_eq!(consumer.assignment(), Vec::from_iter(tps(&[0, 1])));
        assert_eq!(membership(&consumer).owned_for_test(), tps(&[0, 1]));
        assert!(
            consumer
                .partitions
                .values()
                .all(|state| state.committed_pending)
        );

        consumer.buffer.extend([
            vec![record(0, 5)].into_iter(),
            vec![record(1, 7)].into_iter(),
            vec![record(0, 6)].into_iter(),
        ]);
        membership(&consumer).assign_for_test(tps(&[1, 2]));
        consumer.reconcile_group().await;
        assert_eq!(recorder.take(), ["-t-0", "+t-2"]);
        let offsets: Vec<(u32, u64)> = consumer
            .buffered()
            .map(|record| (record.partition, record.offset))
            .collect();
        assert_eq!(offsets, [(1, 7)], "t-0's buffered records are dropped");
        assert_eq!(membership(&consumer).owned_for_test(), tps(&[1, 2]));
    }

    #[tokio::test]
    async fn a_fenced_member_loses_everything_without_a_revocation() {
        let (mut consumer, recorder) = subscribed();
        membership(&consumer).assign_for_test(tps(&[0]));
        consumer.reconcile_group().await;
        recorder.take();
        membership(&consumer).fence_for_test();
        consumer.reconcile_group().await;
        assert_eq!(recorder.take(), ["!t-0"]);
        assert!(consumer.assignment().is_empty());
        assert!(membership(&consumer).owned_for_test().is_empty());

        // The rejoin's assignment arrives: the partition comes back as new.
        membership(&consumer).assign_for_test(tps(&[0]));
        consumer.reconcile_group().await;
        assert_eq!(recorder.take(), ["+t-0"]);
    }

    #[tokio::test]
    async fn subscribe_and_assign_exclude_each_other() {
        let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).unwrap();
        consumer.assign(&[TopicPartition::new("t", 0)]);
        let error = consumer.subscribe(["t"], "g").unwrap_err();
        assert!(matches!(error, Error::SubscribeConflict { .. }), "{error}");
        consumer.assign(&[]);
        consumer.subscribe(["t"], "g").unwrap();
        let error = consumer.subscribe(["t"], "other").unwrap_err();
        assert!(
            error.to_string().contains("already in group 'g'"),
            "{error}"
        );
        assert_eq!(consumer.group_metadata().unwrap().member_epoch, 0);
        assert!(matches!(
            consumer.subscribe(Vec::<String>::new(), "g"),
            Err(Error::InvalidConfig(_))
        ));
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            consumer.assign(&[TopicPartition::new("t", 0)]);
        }));
        assert!(panic.is_err(), "assign while subscribed is a bug");
    }

    #[tokio::test]
    async fn a_commit_after_an_unapplied_fencing_drops_the_lost_partitions_first() {
        let (mut consumer, recorder) = subscribed();
        membership(&consumer).assign_for_test(tps(&[0]));
        consumer.reconcile_group().await;
        recorder.take();
        consumer.seek(&TopicPartition::new("t", 0), 42).unwrap();
        // Fenced and rejoined (a new epoch) before the consumer polled again.
        membership(&consumer).fence_for_test();
        membership(&consumer).rejoin_for_test("m2", 9);
        // Nothing is left to commit under m2's epoch: t-0's position belongs to the old
        // membership (were it committed, `commit_async` would need a broker).
        consumer.commit_async().await.unwrap();
        assert_eq!(recorder.take(), ["!t-0"]);
        assert!(consumer.assignment().is_empty());
        let error = consumer
            .commit_offsets(&[(TopicPartition::new("t", 0), 42)])
            .await
            .unwrap_err();
        assert!(matches!(error, Error::NotAssigned { .. }), "{error}");
    }

    /// On paused time: the clock moves only to the next timer, so the measured time is
    /// the sum of the timeouts that `close` waited for, however loaded the machine is.
    #[tokio::test(start_paused = true)]
    async fn close_against_a_hung_coordinator_returns_within_the_request_timeout() {
        let address = hung_broker().await;
        let mut config = ConsumerConfig::new(&address);
        config.client.request_timeout_ms = 300;
        let mut consumer = Consumer::new(config).unwrap();
        consumer.subscribe(["t"], "g").unwrap();
        membership(&consumer).assign_for_test(tps(&[0]));
        consumer.reconcile_group().await;
        consumer.seek(&TopicPartition::new("t", 0), 7).unwrap();
        let started = Instant::now();
        let error = consumer.close().await.unwrap_err();
        assert!(matches!(error, Error::RequestTimedOut { .. }), "{error}");
        assert!(
            started.elapsed() <= Duration::from_millis(300),
            "close took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn commits_need_a_subscription() {
        let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).unwrap();
        assert!(matches!(
            consumer.commit_sync().await,
            Err(Error::NotSubscribed)
        ));
        assert!(matches!(
            consumer.commit_async().await,
            Err(Error::NotSubscribed)
        ));
        consumer.unsubscribe().await.unwrap();
    }
}
