//! The quorum's files: a torn log tail, a corrupt entry, snapshots with purged logs, and a
//! lagging voter brought up to date by a snapshot.

use std::fs::OpenOptions;
use std::io::Write;

use super::QuorumError;
use super::SNAPSHOT_INTERVAL_ENTRIES;
use super::log_store::{LOG_FILE, STATE_FILE};
use super::record::HEADER_BYTES;
use super::state_machine::SNAPSHOT_FILE;
use super::tests::{Cluster, bounded, poll, propose, snapshot_through};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_tail_is_cut_at_restart() {
    bounded(async {
        let mut cluster = Cluster::start(1, SNAPSHOT_INTERVAL_ENTRIES).await;
        for command in ["a", "b", "c"] {
            propose(cluster.quorum(1), command).await;
        }
        cluster.stop(1).await;
        let log = cluster.dir(1).join(LOG_FILE);
        let intact = std::fs::metadata(&log).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(&100u32.to_le_bytes()).unwrap();
        file.write_all(&[7; 4 + 10]).unwrap();
        drop(file);
        cluster.restart(1).await.unwrap();
        cluster.converge(&["a", "b", "c"]).await;
        propose(cluster.quorum(1), "d").await;
        cluster.stop(1).await;
        assert!(
            std::fs::metadata(&log).unwrap().len() > intact,
            "appended after the cut"
        );
        cluster.restart(1).await.unwrap();
        cluster.converge(&["a", "b", "c", "d"]).await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_in_the_middle_of_the_log_is_a_clear_error() {
    bounded(async {
        let mut cluster = Cluster::start(1, SNAPSHOT_INTERVAL_ENTRIES).await;
        for command in ["a", "b", "c"] {
            propose(cluster.quorum(1), command).await;
        }
        cluster.stop(1).await;
        let log = cluster.dir(1).join(LOG_FILE);
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[HEADER_BYTES + 2] ^= 0x20;
        std::fs::write(&log, bytes).unwrap();
        let Err(error) = cluster.restart(1).await else {
            panic!("a corrupt log must not open");
        };
        assert!(
            matches!(&error, QuorumError::Corrupt { path, offset: 0, .. } if *path == log),
            "{error}"
        );
        assert!(
            error.to_string().contains(&log.display().to_string()),
            "{error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_purges_the_log_and_restores_the_state_after_restart() {
    bounded(async {
        let mut cluster = Cluster::start(1, 5).await;
        let commands: Vec<String> = (0..12).map(|n| format!("command-{n}")).collect();
        let mut last = 0;
        for command in &commands {
            last = propose(cluster.quorum(1), command).await;
        }
        snapshot_through(cluster.quorum(1), last).await;
        let metrics = cluster.quorum(1).metrics();
        poll(|| (metrics.borrow().purged.map_or(0, |purged| purged.index) == last).then_some(()))
            .await;
        cluster.stop(1).await;
        assert!(cluster.dir(1).join(SNAPSHOT_FILE).exists());
        let log = std::fs::read(cluster.dir(1).join(LOG_FILE)).unwrap();
        assert!(
            log.is_empty(),
            "the log behind the snapshot is purged: {} bytes",
            log.len()
        );
        cluster.restart(1).await.unwrap();
        let expected: Vec<&str> = commands.iter().map(String::as_str).collect();
        cluster.converge(&expected).await;
        propose(cluster.quorum(1), "after-restore").await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_voter_catches_up_from_a_snapshot() {
    bounded(async {
        let mut cluster = Cluster::start(3, 5).await;
        let leader = cluster.leader().await;
        let lagging = *cluster.members.keys().find(|&&id| id != leader).unwrap();
        cluster.stop(lagging).await;
        let commands: Vec<String> = (0..12).map(|n| format!("command-{n}")).collect();
        for command in &commands {
            propose(cluster.quorum(leader), command).await;
        }
        let metrics = cluster.quorum(leader).metrics();
        poll(|| (metrics.borrow().purged.map_or(0, |purged| purged.index) >= 5).then_some(()))
            .await;
        cluster.restart(lagging).await.unwrap();
        let expected: Vec<&str> = commands.iter().map(String::as_str).collect();
        cluster.converge(&expected).await;
        // Its log starts after the leader's purge point, so only a snapshot could bring it here.
        let metrics = cluster.quorum(lagging).metrics();
        poll(|| metrics.borrow().snapshot.map(|_| ())).await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_or_snapshot_file_is_a_clear_error() {
    bounded(async {
        let mut cluster = Cluster::start(1, 2).await;
        let mut last = 0;
        for command in ["a", "b", "c"] {
            last = propose(cluster.quorum(1), command).await;
        }
        snapshot_through(cluster.quorum(1), last).await;
        cluster.stop(1).await;
        for name in [STATE_FILE, SNAPSHOT_FILE] {
            let path = cluster.dir(1).join(name);
            let intact = std::fs::read(&path).unwrap();
            let mut damaged = intact.clone();
            damaged[HEADER_BYTES] ^= 1;
            std::fs::write(&path, damaged).unwrap();
            let Err(error) = cluster.restart(1).await else {
                panic!("a damaged {name} must not open");
            };
            assert!(
                matches!(&error, QuorumError::Corrupt { path: named, .. } if *named == path),
                "{error}"
            );
            std::fs::write(&path, intact).unwrap();
        }
        cluster.restart(1).await.unwrap();
        cluster.converge(&["a", "b", "c"]).await;
        cluster.stop_all().await;
    })
    .await;
}
