//! `kill -9` of the controller leader while topics are being created in a loop: every
//! create that was acknowledged exists afterwards on every broker, each topic once (one
//! log per partition in the whole cluster), and creates succeed again within seconds of
//! the kill.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_client::{Admin, ClientConfig, Error, NewTopic};
use strata_protocol::ErrorCode;
use strata_tests::cluster::Cluster;
use strata_tests::{WAIT, bounded};

/// Creates acknowledged before the kill.
const CREATES_BEFORE: usize = 5;
/// Creates acknowledged after the kill before the loop stops.
const CREATES_AFTER: usize = 5;
/// How long after the kill creates must succeed again. The target is 2 s; a
/// loaded two-core machine running debug builds gets some slack.
const FAILOVER_MAX: Duration = Duration::from_secs(5);
const PARTITIONS: u32 = 2;

/// What the create loop saw.
#[derive(Debug, Default)]
struct Creates {
    /// Topics whose create returned success, with when.
    acknowledged: Vec<(String, Instant)>,
    /// Every name tried.
    tried: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_survive_a_kill_of_the_controller_leader() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let leader = cluster.leader().await;
        let config = ClientConfig {
            request_timeout_ms: 3_000,
            connect_timeout_ms: 1_000,
            reconnect_backoff_ms: 20,
            reconnect_backoff_ms_max: 200,
            ..ClientConfig::new(&cluster.bootstrap())
        };
        let admin = Admin::new(config).expect("admin");
        let creates = Arc::new(Mutex::new(Creates::default()));
        let (killed_sender, killed) = tokio::sync::watch::channel(None::<Instant>);
        let looping = tokio::spawn(create_loop(admin.clone(), creates.clone(), killed));

        wait_acknowledged(&creates, CREATES_BEFORE).await;
        cluster.kill_9(leader);
        let killed_at = Instant::now();
        killed_sender.send_replace(Some(killed_at));
        tokio::time::timeout(WAIT * 2, looping)
            .await
            .expect("the create loop ends in time")
            .expect("the create loop");
        let creates = std::mem::take(&mut *creates.lock().expect("lock"));
        let first_after = creates
            .acknowledged
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at > killed_at)
            .expect("a create acknowledged after the kill");
        let failover = first_after - killed_at;
        eprintln!("creates succeeded again {failover:?} after the kill of controller {leader}");
        assert!(
            failover <= FAILOVER_MAX,
            "creates failed for {failover:?} after the kill"
        );

        let status = cluster
            .wait_for(
                |status| {
                    status.controller.leader.is_some_and(|new| new != leader)
                        && status.is(leader, "fenced")
                },
                WAIT,
                "a new controller leader, the old one fenced",
            )
            .await;
        eprintln!("after the kill: {status:?}");

        // Every acknowledged topic exists on the survivors, and nothing was created that
        // was not tried.
        let acknowledged: BTreeSet<String> = creates
            .acknowledged
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        let tried: BTreeSet<String> = creates.tried.iter().cloned().collect();
        cluster
            .wait_for_topics(
                &cluster.running(),
                |topics| acknowledged.iter().all(|name| topics.contains_key(name)),
                "every acknowledged topic",
            )
            .await;
        for id in cluster.running() {
            let topics = cluster.topics_on(id).await;
            let created: BTreeSet<&String> = topics
                .keys()
                .filter(|name| name.starts_with("loop-"))
                .collect();
            for name in &created {
                assert!(
                    tried.contains(*name),
                    "{name} on broker {id} was never created"
                );
                assert_eq!(
                    topics[*name].len(),
                    PARTITIONS as usize,
                    "{name} on broker {id}"
                );
            }
        }

        // The old leader comes back with everything, and each partition's log exists
        // on exactly one broker: no topic was made twice.
        cluster.restart(leader);
        cluster
            .wait_for(
                |status| status.alive().len() == 3,
                WAIT,
                "every broker alive",
            )
            .await;
        cluster
            .wait_for_topics(
                &cluster.ids(),
                |topics| acknowledged.iter().all(|name| topics.contains_key(name)),
                "every acknowledged topic, on the restarted broker too",
            )
            .await;
        let topics = cluster.topics_on(leader).await;
        for name in topics.keys().filter(|name| name.starts_with("loop-")) {
            for partition in 0..PARTITIONS {
                let leader = topics[name][partition as usize];
                wait_single_home(&cluster, name, partition, leader).await;
            }
        }
    })
    .await;
}

/// Creates `loop-0`, `loop-1`, ... one after the other, each retried until it is
/// acknowledged or found to exist, until [`CREATES_AFTER`] were acknowledged after the
/// kill.
async fn create_loop(
    admin: Admin,
    creates: Arc<Mutex<Creates>>,
    killed: tokio::sync::watch::Receiver<Option<Instant>>,
) {
    let mut after_kill = 0;
    for index in 0.. {
        let name = format!("loop-{index}");
        creates.lock().expect("lock").tried.push(name.clone());
        let deadline = Instant::now() + WAIT;
        loop {
            let outcome =
                tokio::time::timeout(WAIT, admin.create_topic(NewTopic::new(&name, PARTITIONS)))
                    .await;
            match outcome {
                Ok(Ok(())) => {
                    let now = Instant::now();
                    creates
                        .lock()
                        .expect("lock")
                        .acknowledged
                        .push((name.clone(), now));
                    if killed.borrow().is_some_and(|at| at < now) {
                        after_kill += 1;
                    }
                    break;
                }
                // An earlier try went through without its answer arriving.
                Ok(Err(Error::Broker {
                    code: ErrorCode::TopicAlreadyExists,
                    ..
                })) => break,
                Ok(Err(error)) => {
                    eprintln!("create {name}: {error}");
                    assert!(
                        Instant::now() < deadline,
                        "create {name} kept failing: {error}"
                    );
                }
                Err(_) => panic!("create {name} did not answer within {WAIT:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if after_kill == CREATES_AFTER {
            break;
        }
    }
}

/// Waits until the log of `name`'s `partition` is on its leader's disk and no other's.
async fn wait_single_home(cluster: &Cluster, name: &str, partition: u32, leader: Option<u32>) {
    let leader = leader.unwrap_or_else(|| panic!("{name}-{partition} has a leader"));
    let deadline = Instant::now() + WAIT;
    loop {
        let homes: Vec<u32> = cluster
            .ids()
            .into_iter()
            .filter(|&id| cluster.partition_dirs(id, name).contains(&partition))
            .collect();
        if homes == [leader] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}-{partition} is on brokers {homes:?}, its leader is {leader}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the loop has `count` acknowledged creates.
async fn wait_acknowledged(creates: &Mutex<Creates>, count: usize) {
    let deadline = Instant::now() + WAIT;
    while creates.lock().expect("lock").acknowledged.len() < count {
        assert!(
            Instant::now() < deadline,
            "{count} creates not acknowledged in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
