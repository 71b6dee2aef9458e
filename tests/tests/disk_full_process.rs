//! A real `strata-broker` whose data directory is on a small tmpfs that fills up: a
//! produce fails with `StorageFull` and the broker keeps serving; once space is freed, the
//! same broker process takes produces again, and nothing refused shows up in the log.
//! Once with the refused produce failing in the segment's write, once with it rolling a
//! segment, so that the sealed segment's index writes fail too.

use bytes::Bytes;
use strata_protocol::ErrorCode;
use strata_protocol::batch::BatchBuilder;
use strata_protocol::messages::*;
use strata_tests::disk_full::SmallDisk;
use strata_tests::*;

/// A batch of 64 records of 1 KiB whose values start `"{prefix}-{index}/"`: more than a
/// page, so it cannot fit in what a segment's last page has left.
fn large_batch(prefix: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    for index in 0..64 {
        let mut value = format!("{prefix}-{index}/").into_bytes();
        value.resize(1024, b'.');
        builder.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    builder.finish()
}

/// The values of a partition's records, up to the `/` that starts their padding.
async fn values_in(client: &mut Client) -> Vec<String> {
    let records = client.read_all("events", 0, 0).await;
    values(&records)
        .into_iter()
        .map(|value| value.split('/').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_produce_and_the_broker_takes_it_again_once_freed() {
    fill_refuse_free(&["durability=every_batch"]).await;
}

#[tokio::test]
async fn a_roll_on_a_full_disk_refuses_produce_and_the_broker_takes_it_again_once_freed() {
    // Each produce is about half a segment: the refused one rolls the segment.
    let segments = ["segment_bytes=131072", "max_message_bytes=131072"];
    fill_refuse_free(&["durability=every_batch", segments[0], segments[1]]).await;
}

async fn fill_refuse_free(settings: &[&str]) {
    // Declared before the broker, so dropped after it: the broker is killed, then the
    // disk unmounted.
    let mut disk = match SmallDisk::mount(32 << 20) {
        Ok(disk) => disk,
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            println!("skipped: mounting a tmpfs is not permitted here ({error}); run as root");
            return;
        }
        Err(error) => panic!("mount a tmpfs for the data directory: {error}"),
    };
    let data_dir = disk.path().join("data");
    let broker = BrokerProcess::start(&data_dir, settings);
    bounded(async {
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("events", 1, &[]).await;
        let before = client
            .produce("events", 0, Acks::All, large_batch("before"))
            .await;
        assert_eq!(before.error_code, ErrorCode::None);

        let taken = disk.fill().expect("fill the disk");
        println!("the filler took {taken} bytes");
        let refused = client
            .produce("events", 0, Acks::All, large_batch("refused"))
            .await;
        assert_eq!(
            refused.error_code,
            ErrorCode::StorageFull,
            "{:?}",
            refused.error_message
        );
        println!("refused: {:?}", refused.error_message);
        assert!(
            refused
                .error_message
                .as_deref()
                .is_some_and(|message| !message.is_empty()),
            "the refusal says why"
        );
        // Still serving: reads work while the disk is full.
        assert_eq!(values_in(&mut client).await.len(), 64);

        disk.free().expect("free the disk");
        let after = client
            .produce("events", 0, Acks::All, large_batch("after"))
            .await;
        assert_eq!(
            after.error_code,
            ErrorCode::None,
            "the same broker takes produces again once space is free: {:?}",
            after.error_message
        );
        let values = values_in(&mut client).await;
        assert_eq!(values.len(), 128, "{values:?}");
        assert!(
            values[..64]
                .iter()
                .all(|value| value.starts_with("before-"))
        );
        assert!(values[64..].iter().all(|value| value.starts_with("after-")));
    })
    .await;
}
