//! Under a durability policy that fsyncs, consumers read a record only once it is durable:
//! a record whose fsync never completes is never visible, so a power loss can take back
//! no record that anyone has read. Under `never`, a record is visible once appended.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::io::{Fault, FaultyIo, in_process_config};
use strata_tests::{Client, batch_of, bounded, data_dir, decode_records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_visible_once_durable_and_never_before() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("unsynced-0", Fault::Sync(libc::EIO));
        let failing = Arc::clone(&io.failing);
        let storage = Storage::with_io(Arc::new(io)).unwrap();
        let server = Server::start_with(in_process_config(dir.path()), storage)
            .await
            .unwrap();
        let address = server.address.to_string();
        let mut client = Client::connect(&address).await;
        let fsyncs = [("durability", "every_batch")];
        client.create_topic("synced", 1, &fsyncs).await;
        client.create_topic("unsynced", 1, &fsyncs).await;
        client
            .create_topic("appended", 1, &[("durability", "never")])
            .await;

        // A consumer waiting for a record gets it once its fsync completes.
        let mut consumer = Client::connect(&address).await;
        let waiting = tokio::spawn(async move { consumer.fetch("synced", 0, 0, 30_000, 1).await });
        let produced = client
            .produce("synced", 0, Acks::Leader, batch_of("a", 2))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let fetched = waiting.await.unwrap();
        assert_eq!(fetched.high_watermark, 2);
        assert_eq!(decode_records(&fetched.records).len(), 2);

        // The leader acknowledges a record whose fsync then fails: no consumer ever sees it.
        failing.store(true, Ordering::SeqCst);
        let produced = client
            .produce("unsynced", 0, Acks::Leader, batch_of("b", 2))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None);
        // An acks=all produce is answered once the failed fsync has poisoned the log.
        let refused = client
            .produce("unsynced", 0, Acks::All, batch_of("c", 1))
            .await;
        assert_eq!(refused.error_code, ErrorCode::StorageError);
        for offset in [0, 1, 2] {
            let fetched = client.fetch("unsynced", 0, offset, 0, 0).await;
            assert_eq!(fetched.error_code, ErrorCode::None, "at {offset}");
            assert_eq!(fetched.high_watermark, 0, "at {offset}");
            assert!(fetched.records.is_empty(), "at {offset}");
        }

        // Under `never` a record is visible as soon as it is appended.
        let produced = client
            .produce("appended", 0, Acks::Leader, batch_of("d", 3))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let fetched = client.fetch("appended", 0, 0, 0, 0).await;
        assert_eq!(fetched.high_watermark, 3);
        assert_eq!(decode_records(&fetched.records).len(), 3);
        server.shutdown().await;
    })
    .await;
}
