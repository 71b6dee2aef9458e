//! A group change that cannot be written to the offsets log (the disk is full) is undone
//! in memory too, so no later change that does reach the log can contradict it: in
//! particular a revocation whose confirmation was never written does not let the
//! partition go to another member, before or after a restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::ErrorCode;
use strata_storage::Io;
use strata_tests::group::Member;
use strata_tests::io::{Fault, FaultyIo, in_process_config};
use strata_tests::{Client, bounded, data_dir};

async fn owners(client: &mut Client) -> Vec<BTreeSet<u32>> {
    client
        .describe_group("g")
        .await
        .members
        .iter()
        .map(|member| {
            member
                .assignment
                .iter()
                .flat_map(|topic| topic.partitions.clone())
                .collect()
        })
        .collect()
}

fn assert_disjoint(owned: &[BTreeSet<u32>]) {
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
    assert_eq!(total, union.len(), "a partition has two owners: {owned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritten_revocation_confirmation_does_not_hand_the_partition_over() {
    bounded(async {
        let dir = data_dir();
        let io = Arc::new(FaultyIo::new(
            "__consumer_offsets",
            Fault::Write(libc::ENOSPC),
        ));
        let full = Arc::clone(&io.failing);
        let config = in_process_config(dir.path());
        let start = || {
            let storage = Storage::with_io(Arc::clone(&io) as Arc<dyn Io>).unwrap();
            Server::start_with(config.clone(), storage)
        };
        let server = start().await.unwrap();
        let address = server.address.to_string();
        let mut admin = Client::connect(&address).await;
        admin.create_topic("t", 2, &[]).await;

        let mut a = Member::join(&address, "g", &["t"], None).await;
        assert_eq!(a.owned.len(), 2);
        let mut b = Member::join(&address, "g", &["t"], None).await;
        assert!(b.owned.is_empty());
        // A is told to give one partition up.
        let kept = a.sync().await;
        assert_eq!(kept.len(), 1);

        // A's confirmation cannot be written.
        full.store(true, Ordering::SeqCst);
        let error = a.heartbeat().await.unwrap_err();
        assert_eq!(error.0, ErrorCode::StorageFull);
        full.store(false, Ordering::SeqCst);

        // So B must not get the partition: the log still says A holds it.
        assert!(
            b.sync().await.is_empty(),
            "granted on an unwritten confirmation"
        );
        assert_disjoint(&owners(&mut admin).await);

        // Once A confirms again, and it is written, B gets it, and a restart agrees.
        a.sync().await;
        let b_owned = b.sync().await;
        assert_eq!(b_owned.len(), 1);
        assert!(b_owned.is_disjoint(&kept));
        let before = owners(&mut admin).await;
        assert_disjoint(&before);
        drop((a, b, admin));
        server.shutdown().await;

        let server = start().await.unwrap();
        let mut admin = Client::connect(&server.address.to_string()).await;
        assert_eq!(owners(&mut admin).await, before);
        server.shutdown().await;
    })
    .await;
}
