//! Consumer groups through the client library and the CLI, against a real broker:
//! an even split with every record processed once, joins and leaves that move only what
//! they must with ownership intervals that never overlap, a killed consumer process
//! handing over after its session times out, and a static member's restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, GroupDescription, NewTopic,
    RebalanceListener, TopicPartition,
};
use strata_tests::*;

/// What one member saw, stamped on one clock shared by every member of the test.
#[derive(Debug, Clone)]
enum Event {
    Assigned(usize, TopicPartition, Instant),
    Revoked(usize, TopicPartition, Instant),
    Record(usize, TopicPartition, u64, Instant),
}

/// Every member's events, with a change counter to wait on.
#[derive(Clone)]
struct Journal {
    events: Arc<Mutex<Vec<Event>>>,
    changes: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            events: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Journal {
    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
        self.changes.send_modify(|count| *count += 1);
    }

    /// Waits until `condition` holds, re-checking after every new event.
    async fn wait_until(&self, what: &str, condition: impl Fn(&Journal) -> bool) {
        let mut changes = self.changes.subscribe();
        tokio::time::timeout(WAIT, changes.wait_for(|_| condition(self)))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
            .expect("the journal outlives the wait");
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn records(&self) -> Vec<(usize, TopicPartition, u64)> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Record(member, tp, offset, _) => Some((member, tp, offset)),
                _ => None,
            })
            .collect()
    }

    fn revocations(&self, member: usize) -> usize {
        self.events()
            .iter()
            .filter(|event| matches!(event, Event::Revoked(m, ..) if *m == member))
            .count()
    }
}

struct Listener {
    member: usize,
    journal: Journal,
}

impl RebalanceListener for Listener {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.journal
                .push(Event::Assigned(self.member, tp.clone(), Instant::now()));
        }
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.journal
                .push(Event::Revoked(self.member, tp.clone(), Instant::now()));
        }
    }
}

/// A consumer task: subscribes, polls and journals until told to stop, then closes.
struct Running {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        bounded(self.task).await.expect("consumer task");
    }
}

fn consumer_config(bootstrap: &str, instance_id: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        auto_commit_interval_ms: 200,
        group_instance_id: instance_id.map(str::to_owned),
        fetch_wait_ms_max: 100,
        ..ConsumerConfig::new(bootstrap)
    }
}

fn spawn_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    member: usize,
    journal: &Journal,
    instance_id: Option<&str>,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumer = Consumer::new(consumer_config(bootstrap, instance_id)).unwrap();
    consumer.set_rebalance_listener(Listener {
        member,
        journal: journal.clone(),
    });
    consumer.subscribe([topic], group).unwrap();
    let (flag, journal) = (stop.clone(), journal.clone());
    let task = tokio::spawn(async move {
        while !flag.load(Ordering::SeqCst) {
            for record in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                let tp = TopicPartition::new(&*record.topic, record.partition);
                journal.push(Event::Record(member, tp, record.offset, Instant::now()));
            }
        }
        consumer.close().await.unwrap();
    });
    Running { stop, task }
}

/// Polls the broker (it has no push for group state) until `group` is stable with
/// `members` members.
async fn stable_group(admin: &Admin, group: &str, members: usize) -> GroupDescription {
    let deadline = Instant::now() + WAIT;
    loop {
        let described = admin.describe_group(group).await;
        if let Ok(described) = &described
            && described.state == "stable"
            && described.members.len() == members
        {
            return described.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{group} never stable with {members} members: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per partition, the intervals each member owned it, from the journal; an interval
/// still open at the end runs to `Instant::now()`.
fn ownership(events: &[Event]) -> BTreeMap<TopicPartition, Vec<(usize, Instant, Instant)>> {
    let mut open: BTreeMap<(usize, TopicPartition), Instant> = BTreeMap::new();
    let mut intervals: BTreeMap<TopicPartition, Vec<(usize, Instant, Instant)>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Assigned(member, tp, at) => {
                assert!(
                    open.insert((*member, tp.clone()), *at).is_none(),
                    "{tp:?} assigned twice to {member}"
                );
            }
            Event::Revoked(member, tp, at) => {
                let start = open
                    .remove(&(*member, tp.clone()))
                    .expect("revoked without assignment");
                intervals
                    .entry(tp.clone())
                    .or_default()
                    .push((*member, start, *at));
            }
            Event::Record(..) => {}
        }
    }
    let now = Instant::now();
    for ((member, tp), start) in open {
        intervals.entry(tp).or_default().push((member, start, now));
    }
    intervals
}

fn assert_no_overlap_and_records_inside(events: &[Event]) {
    let intervals = ownership(events);
    for (tp, owned) in &intervals {
        let mut sorted = owned.clone();
        sorted.sort_by_key(|(_, start, _)| *start);
        for pair in sorted.windows(2) {
            assert!(
                pair[0].2 <= pair[1].1,
                "{tp:?} owned by {} and {} at once",
                pair[0].0,
                pair[1].0
            );
        }
    }
    for event in events {
        if let Event::Record(member, tp, offset, at) = event {
            let inside = intervals[tp]
                .iter()
                .any(|(owner, start, end)| owner == member && start <= at && at <= end);
            assert!(
                inside,
                "member {member} consumed {tp:?}@{offset} without owning it"
            );
        }
    }
}

fn assert_each_once(
    records: &[(usize, TopicPartition, u64)],
    partitions: u32,
    per_partition: u32,
    topic: &str,
) {
    let mut seen = BTreeSet::new();
    for (_, tp, offset) in records {
        assert!(
            seen.insert((tp.clone(), *offset)),
            "{tp:?}@{offset} processed twice"
        );
    }
    let expected: BTreeSet<_> = (0..partitions)
        .flat_map(|p| {
            (0..u64::from(per_partition)).map(move |o| (TopicPartition::new(topic, p), o))
        })
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn members_split_partitions_evenly_and_process_every_record_once() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["group_heartbeat_interval_ms=100"]);
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin.create_topic(NewTopic::new("even", 6)).await.unwrap();
        produce_to_partitions(&broker.address, "even", 6, 100).await;

        let journal = Journal::default();
        let members: Vec<Running> = (0..3)
            .map(|member| spawn_member(&broker.address, "split", "even", member, &journal, None))
            .collect();
        journal
            .wait_until("every record is processed", |journal| {
                journal.records().len() >= 600
            })
            .await;
        let group = stable_group(&admin, "split", 3).await;
        for member in &group.members {
            assert_eq!(member.assignment.len(), 2, "uneven split: {group:?}");
        }
        for member in members {
            member.stop().await;
        }
        assert_each_once(&journal.records(), 6, 100, "even");
        assert_no_overlap_and_records_inside(&journal.events());
        let committed = admin.group_offsets("split").await.unwrap();
        assert_eq!(committed.len(), 6);
        assert!(
            committed.iter().all(|(_, offset)| *offset == 100),
            "{committed:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn joins_and_leaves_move_only_what_they_must_and_owners_never_overlap() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["group_heartbeat_interval_ms=100"]);
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin.create_topic(NewTopic::new("moves", 6)).await.unwrap();
        let journal = Journal::default();

        let first = spawn_member(&broker.address, "movers", "moves", 0, &journal, None);
        let second = spawn_member(&broker.address, "movers", "moves", 1, &journal, None);
        stable_group(&admin, "movers", 2).await;
        produce_to_partitions(&broker.address, "moves", 6, 50).await;
        journal
            .wait_until("the first wave is processed", |journal| {
                journal.records().len() >= 300
            })
            .await;
        let (before_0, before_1) = (journal.revocations(0), journal.revocations(1));

        // A third member takes exactly one partition from each of the two.
        let third = spawn_member(&broker.address, "movers", "moves", 2, &journal, None);
        stable_group(&admin, "movers", 3).await;
        produce_to_partitions(&broker.address, "moves", 6, 50).await;
        journal
            .wait_until("the second wave is processed", |journal| {
                journal.records().len() >= 600
            })
            .await;
        let moved = (journal.revocations(0) - before_0) + (journal.revocations(1) - before_1);
        assert_eq!(
            moved,
            2,
            "a join moved more than it must: {:?}",
            journal.events()
        );

        // The second leaves: only its partitions move; nobody else gives anything up.
        let (before_0, before_2) = (journal.revocations(0), journal.revocations(2));
        second.stop().await;
        stable_group(&admin, "movers", 2).await;
        produce_to_partitions(&broker.address, "moves", 6, 50).await;
        journal
            .wait_until("the third wave is processed", |journal| {
                journal.records().len() >= 900
            })
            .await;
        assert_eq!(journal.revocations(0), before_0);
        assert_eq!(journal.revocations(2), before_2);

        first.stop().await;
        third.stop().await;
        assert_each_once(&journal.records(), 6, 150, "moves");
        assert_no_overlap_and_records_inside(&journal.events());
    })
    .await;
}

/// Kills `child` when dropped, so a failing test leaves no process behind.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_killed_consumer_process_hands_over_after_its_session_and_resumes_from_the_commit() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(
            dir.path(),
            &[
                "group_session_timeout_ms=3000",
                "group_heartbeat_interval_ms=100",
            ],
        );
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin
            .create_topic(NewTopic::new("handover", 2))
            .await
            .unwrap();
        produce_to_partitions(&broker.address, "handover", 2, 100).await;

        let mut child = ChildGuard(
            Command::new(binary("strata"))
                .args([
                    "--bootstrap",
                    &broker.address,
                    "consume",
                    "handover",
                    "--group",
                    "workers",
                    "--from-beginning",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn strata consume"),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (printed, mut lines) = tokio::sync::watch::channel(0usize);
        std::thread::spawn(move || {
            for _ in BufReader::new(stdout).lines() {
                printed.send_modify(|count| *count += 1);
            }
        });
        tokio::time::timeout(WAIT, lines.wait_for(|count| *count == 200))
            .await
            .expect("the CLI consumer prints everything")
            .expect("the CLI's stdout is read until it prints everything");
        // Wait for a commit to cover some of it, then kill -9 (std's kill sends SIGKILL).
        let deadline = Instant::now() + WAIT;
        while admin
            .group_offsets("workers")
            .await
            .unwrap()
            .iter()
            .all(|(_, offset)| *offset == 0)
        {
            assert!(Instant::now() < deadline, "the CLI never committed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let killed_at = Instant::now();
        let committed: BTreeMap<u32, u64> = admin
            .group_offsets("workers")
            .await
            .unwrap()
            .into_iter()
            .map(|(tp, offset)| (tp.partition, offset))
            .collect();
        let group = admin.describe_group("workers").await.unwrap();
        assert_eq!(
            group.members.len(),
            1,
            "the dead member is kept until its session expires"
        );
        produce_to_partitions(&broker.address, "handover", 2, 20).await;

        let journal = Journal::default();
        let survivor = spawn_member(&broker.address, "workers", "handover", 0, &journal, None);
        journal
            .wait_until("the survivor processes the rest", |journal| {
                let records = journal.records();
                (0..2).all(|p| {
                    records
                        .iter()
                        .any(|(_, tp, offset)| tp.partition == p && *offset == 119)
                })
            })
            .await;
        let assigned_at = journal
            .events()
            .iter()
            .find_map(|event| match event {
                Event::Assigned(_, _, at) => Some(*at),
                _ => None,
            })
            .unwrap();
        assert!(
            assigned_at.duration_since(killed_at) >= Duration::from_millis(2000),
            "partitions moved before the dead member's session expired"
        );
        for partition in 0..2 {
            let first = journal
                .records()
                .iter()
                .filter(|(_, tp, _)| tp.partition == partition)
                .map(|(_, _, offset)| *offset)
                .min()
                .unwrap();
            assert_eq!(
                first,
                committed.get(&partition).copied().unwrap_or(0),
                "partition {partition}"
            );
        }
        survivor.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_static_member_restart_gets_its_partitions_back_without_moving_others() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["group_heartbeat_interval_ms=100"]);
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin
            .create_topic(NewTopic::new("static", 4))
            .await
            .unwrap();
        let journal = Journal::default();
        let fixed = spawn_member(
            &broker.address,
            "statics",
            "static",
            0,
            &journal,
            Some("fixed-1"),
        );
        let other = spawn_member(&broker.address, "statics", "static", 1, &journal, None);
        let before = stable_group(&admin, "statics", 2).await;
        let owned_by = |group: &GroupDescription, instance: Option<&str>| {
            group
                .members
                .iter()
                .find(|m| m.instance_id.as_deref() == instance)
                .map(|m| m.assignment.clone())
                .unwrap()
        };
        let fixed_before = owned_by(&before, Some("fixed-1"));
        let other_revocations = journal.revocations(1);

        fixed.stop().await;
        let restarted = spawn_member(
            &broker.address,
            "statics",
            "static",
            2,
            &journal,
            Some("fixed-1"),
        );
        let after = stable_group(&admin, "statics", 2).await;
        assert_eq!(owned_by(&after, Some("fixed-1")), fixed_before);
        assert_eq!(
            after.group_epoch, before.group_epoch,
            "a static restart is not a rebalance"
        );
        assert_eq!(
            journal.revocations(1),
            other_revocations,
            "the other member gave nothing up"
        );
        restarted.stop().await;
        other.stop().await;
    })
    .await;
}
