//! Memory is bounded per request, per connection and per broker: a list of attacks, run
//! one after another against one real `strata-broker`, is each answered with an error or
//! disconnected. Through all of them the broker's peak RSS (`VmHWM`) stays under 1 GiB,
//! a bystander client produces and consumes without error, and no deleted segment stays
//! open once a slow reader that held it has been closed.
//!
//! The attacks:
//! - stalled frames: 200 connections each announce a largest frame, send three quarters
//!   of it and stall; the request budget holds only 32 of them at a time, and each is closed after
//!   `frame_read_timeout_ms`.
//! - pipelined produces: 48 connections each pipeline four largest produce frames and
//!   read nothing until all are sent; at most `request_memory_bytes_max` of them are held.
//! - a slow reader: fetches a topic's first batch again and again and reads nothing while
//!   the topic is deleted; `write_timeout_ms` closes it and the segment is let go.
//! - parked fetches: a long-poll fetch over too many partitions is refused
//!   `LimitExceeded`, and one past its connection's or the broker's allowance is answered
//!   without waiting.
//! - queued replies: six connections each pipeline 192 OffsetFetch, DescribeTopics and
//!   Metadata requests with large replies and read none of them; at most
//!   `response_memory_bytes_max` of replies are queued, and `write_timeout_ms` closes
//!   every attacker.
//! - fan-out: a frame full of partition entries for each API that takes them, and too
//!   many topics or groups in one request, each answered `LimitExceeded`; a partition
//!   named twice, answered `InvalidRequest`.
//!
//! New attacks go into [`attacks`]: each is a future that returns once the broker has
//! answered or disconnected every connection it opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use strata_protocol::codec::{FrameCodec, RequestFrame};
use strata_protocol::frame::{RequestHeader, ResponseResult};
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, ErrorCode, Request, Response};
use strata_tests::attacks;
use strata_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

const FRAME_BYTES_MAX: usize = 8 << 20;
const REQUEST_MEMORY_BYTES_MAX: usize = 256 << 20;
/// A quarter of the default, as this test's frames are half the default's: replies of
/// this many encoded bytes hold about three times as much heap as decoded values.
const RESPONSE_MEMORY_BYTES_MAX: usize = 64 << 20;
const FETCH_WAIT_PARTITIONS_MAX: u32 = 64;
const PEAK_RSS_BYTES_MAX: u64 = 1 << 30;

/// The broker under attack.
struct Target {
    broker: BrokerProcess,
    /// Its data directory, as the kernel names it in `/proc`.
    data_dir: PathBuf,
}

impl Target {
    fn address(&self) -> &str {
        &self.broker.address
    }
}

/// The attacks, in order. Each returns once every connection it opened was answered or
/// disconnected.
fn attacks(target: &Target) -> Vec<(&'static str, BoxFuture<'_, ()>)> {
    vec![
        ("stalled frames", stalled_frames(target).boxed()),
        ("pipelined produces", pipelined_produces(target).boxed()),
        ("slow reader", slow_reader(target).boxed()),
        ("parked fetches", parked_fetches(target).boxed()),
        ("queued replies", queued_replies(target).boxed()),
        ("fan-out", fan_out(target).boxed()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attacks_are_refused_within_bounded_memory_while_a_bystander_works() {
    bounded(async {
        let dir = data_dir();
        let settings = [
            format!("frame_bytes_max={FRAME_BYTES_MAX}"),
            format!("request_memory_bytes_max={REQUEST_MEMORY_BYTES_MAX}"),
            format!("response_memory_bytes_max={RESPONSE_MEMORY_BYTES_MAX}"),
            "frame_read_timeout_ms=1000".to_owned(),
            "write_timeout_ms=3000".to_owned(),
            format!("fetch_wait_partitions_max={FETCH_WAIT_PARTITIONS_MAX}"),
            format!(
                "connection_fetch_wait_partitions_max={}",
                FETCH_WAIT_PARTITIONS_MAX * 3 / 2
            ),
            format!(
                "fetch_wait_partitions_total_max={}",
                FETCH_WAIT_PARTITIONS_MAX * 5 / 2
            ),
        ];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let target = Target {
            broker: BrokerProcess::start(dir.path(), &settings),
            data_dir: dir.path().canonicalize().expect("the data directory"),
        };
        let mut setup = Client::connect(target.address()).await;
        setup.create_topic("steady", 1, &[]).await;
        let stop = Arc::new(AtomicBool::new(false));
        let bystander = tokio::spawn(bystander(target.address().to_owned(), stop.clone()));
        for (name, attack) in attacks(&target) {
            let started = Instant::now();
            attack.await;
            let peak = peak_rss_bytes(target.broker.pid());
            println!(
                "{name}: done in {:?}, broker peak RSS {} MiB",
                started.elapsed(),
                peak >> 20
            );
            assert!(
                peak < PEAK_RSS_BYTES_MAX,
                "after {name}: peak RSS {peak} bytes"
            );
        }
        stop.store(true, Ordering::Release);
        let rounds = bystander.await.expect("the bystander never failed");
        assert!(rounds > 0);
        // Every reservation was given back: nothing holds request or reply memory now.
        wait_for_metrics(
            &target.broker.metrics_address,
            &[
                "strata_request_memory_bytes 0",
                "strata_response_memory_bytes 0",
            ],
        )
        .await;
        still_serves(target.address()).await;
    })
    .await;
}

/// Produces a batch and reads it back, again and again until `stop`; every call must
/// succeed. Returns the rounds done.
async fn bystander(address: String, stop: Arc<AtomicBool>) -> u64 {
    let mut client = Client::connect(&address).await;
    let mut rounds = 0;
    while !stop.load(Ordering::Acquire) {
        let prefix = format!("round-{rounds}");
        let produced = client
            .produce("steady", 0, Acks::All, batch_of(&prefix, 3))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None, "{produced:?}");
        let fetched = client.fetch("steady", 0, produced.base_offset, 0, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None, "{fetched:?}");
        let records = decode_records(&fetched.records);
        assert_eq!(
            values(&records[..3]),
            [0, 1, 2].map(|index| format!("{prefix}-{index}"))
        );
        rounds += 1;
    }
    rounds
}

/// A fresh connection still gets answers.
async fn still_serves(address: &str) {
    let mut client = Client::connect(address).await;
    let records = client.read_all("steady", 0, 0).await;
    assert!(!records.is_empty());
}

/// 200 connections each announce a frame of `frame_bytes_max`, send three quarters of
/// it, and stall. Unbounded, that is 1.2 GiB of bodies held at once.
async fn stalled_frames(target: &Target) {
    const CONNECTIONS: usize = 200;
    let mut partial_frame = (FRAME_BYTES_MAX as u32).to_be_bytes().to_vec();
    partial_frame.resize(4 + FRAME_BYTES_MAX / 4 * 3, 0x5A);
    let partial_frame = Bytes::from(partial_frame);
    let stalls = (0..CONNECTIONS).map(|_| {
        let partial_frame = partial_frame.clone();
        let address = target.address().to_owned();
        tokio::spawn(async move {
            let mut socket = connect(&address).await;
            // The broker may close the socket while this is still being written.
            let _ = socket.write_all(&partial_frame).await;
            assert_closed_without_answer(&mut socket).await;
        })
    });
    for stall in join_all(stalls).await {
        stall.expect("every stalled connection is closed");
    }
}

/// 48 connections each pipeline four produce frames of nearly `frame_bytes_max`, a
/// batch far above `max_message_bytes`, and only then read. Unbounded, the broker would
/// hold three frames per connection, 1.1 GiB.
async fn pipelined_produces(target: &Target) {
    const CONNECTIONS: usize = 48;
    const FRAMES: usize = 4;
    let frame = encode(&Request::Produce(ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "steady".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: Bytes::from(vec![0x11; FRAME_BYTES_MAX - 1024]).into(),
            }],
        }],
    }));
    let pipelines = (0..CONNECTIONS).map(|_| {
        let frame = frame.clone();
        let address = target.address().to_owned();
        tokio::spawn(async move {
            let mut client = Client::connect(&address).await;
            for _ in 0..FRAMES {
                client.send_raw(&frame).await;
            }
            for _ in 0..FRAMES {
                let (_, result) = client.receive(ApiKey::Produce).await;
                let Ok(Response::Produce(response)) = result else {
                    panic!("a produce response: {result:?}")
                };
                let partition = &response.topics[0].partitions[0];
                assert_eq!(partition.error_code, ErrorCode::MessageTooLarge);
            }
        })
    });
    for pipeline in join_all(pipelines).await {
        pipeline.expect("every pipelined produce is refused");
    }
}

/// A client fetches a topic's first batch 32 times over and reads nothing; meanwhile the
/// topic is deleted. Its queued replies hold the deleted segments until
/// `write_timeout_ms` closes it; then none stays open.
async fn slow_reader(target: &Target) {
    let mut admin = Client::connect(target.address()).await;
    admin
        .create_topic("doomed", 1, &[("segment_bytes", "1048576")])
        .await;
    for round in 0..32 {
        let response = admin
            .produce("doomed", 0, Acks::Leader, large_batch(round))
            .await;
        assert_eq!(response.error_code, ErrorCode::None);
    }
    let pid = target.broker.pid();
    // A receive buffer far smaller than one reply: the broker's writes stall at once.
    let mut reader = connect_reading_slowly(target.address()).await;
    // Each fetch gets the first batch alone (a response's first batch may pass its
    // byte limit): 256 KiB, so 32 replies are more than the socket buffers take.
    let fetch = encode(&Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        topics: vec![FetchTopic {
            name: "doomed".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: NO_EPOCH,
                fetch_offset: 0,
                last_fetched_epoch: NO_EPOCH,
                partition_max_bytes: 1,
            }],
        }],
    }));
    for _ in 0..32 {
        reader.write_all(&fetch).await.expect("send a fetch");
    }
    // Every fetch has read its records, so the replies hold their segment before the
    // topic goes.
    wait_for_metrics(
        &target.broker.metrics_address,
        &["strata_records_out_total{topic=\"doomed\"} 8192"],
    )
    .await;
    admin.delete_topic("doomed").await;
    let data_dir = &target.data_dir;
    wait_until(
        || !deleted_segments_held(pid, data_dir).is_empty(),
        "the slow reader's replies hold deleted segments",
    )
    .await;
    wait_until(
        || deleted_segments_held(pid, data_dir).is_empty(),
        "no deleted segment held once write_timeout_ms closed the slow reader",
    )
    .await;
    read_until_closed(&mut reader).await;
}

/// A long-poll fetch naming more than `fetch_wait_partitions_max` partitions is refused;
/// one that would take its connection past `connection_fetch_wait_partitions_max`, or
/// the broker past `fetch_wait_partitions_total_max`, is answered at once instead of
/// waiting its `max_wait_ms` (30 s, longer than any wait here).
async fn parked_fetches(target: &Target) {
    let mut admin = Client::connect(target.address()).await;
    admin
        .create_topic("watched", FETCH_WAIT_PARTITIONS_MAX, &[])
        .await;
    let every_partition = || long_poll(0..FETCH_WAIT_PARTITIONS_MAX, 30_000);
    let mut first = Client::connect(target.address()).await;
    let too_many = long_poll(0..=FETCH_WAIT_PARTITIONS_MAX, 30_000);
    let Err((code, message)) = first.try_call(too_many).await else {
        panic!("a fetch over too many partitions was served")
    };
    assert_eq!(code, ErrorCode::LimitExceeded, "{message}");
    assert!(message.contains("fetch_wait_partitions_max"), "{message}");
    // Two thirds of the first connection's allowance, two fifths of the broker's.
    first.send(every_partition()).await;
    wait_for_fetches_waiting(target, 1).await;
    // Past the first connection's allowance: answered right behind the fetch before it.
    first.send(every_partition()).await;
    // Four fifths of the broker's allowance.
    let mut second = Client::connect(target.address()).await;
    second.send(every_partition()).await;
    wait_for_fetches_waiting(target, 2).await;
    // Past the broker's allowance: answered at once, with nothing.
    let mut third = Client::connect(target.address()).await;
    let response = fetched(third.try_call(every_partition()).await);
    assert!(
        response.topics[0]
            .partitions
            .iter()
            .all(|partition| partition.records.is_empty())
    );
    let produced = admin
        .produce("watched", 3, Acks::Leader, batch_of("wake", 1))
        .await;
    assert_eq!(produced.error_code, ErrorCode::None);
    for _ in 0..2 {
        fetched(first.receive(ApiKey::Fetch).await.1);
    }
    fetched(second.receive(ApiKey::Fetch).await.1);
}

/// Six connections each pipeline 192 requests and read nothing: OffsetFetch for every
/// offset of a group that committed 2000 offsets with 4000 bytes of metadata each (8 MB
/// a reply), in turn with DescribeTopics and Metadata for a 4096-partition topic (250 KB
/// and 125 KB encoded, about three times that in heap). Unbounded, each connection would
/// hold about 130 replies (`connection_in_flight_requests_max` queued, and those being
/// written and built), over 2 GiB in all; the response budget holds 64 MiB of them.
async fn queued_replies(target: &Target) {
    const CONNECTIONS: usize = 6;
    const REQUESTS: u32 = 192;
    // Half the test's budget: the attack has spent it once this much is queued.
    const QUEUED_BYTES_MIN: f64 = (32 << 20) as f64;
    let mut admin = Client::connect(target.address()).await;
    admin.create_wide_topic("wide", 4096).await;
    let metadata = "m".repeat(4000);
    for first in [0, 1000] {
        let commit = OffsetCommitRequest {
            group_id: "hoard".into(),
            member_id: String::new(),
            member_epoch: ADMIN_COMMIT_EPOCH,
            topics: vec![OffsetCommitTopic {
                name: "wide".into(),
                partitions: (first..first + 1000)
                    .map(|partition| OffsetCommitPartition {
                        partition,
                        offset: 0,
                        metadata: Some(metadata.clone()),
                    })
                    .collect(),
            }],
        };
        let Response::OffsetCommit(committed) = admin.call(commit).await else {
            panic!("not an offset commit response")
        };
        let partitions = &committed.topics[0].partitions;
        assert!(partitions.iter().all(|p| p.error_code == ErrorCode::None));
    }
    let every_offset = encode(&Request::OffsetFetch(OffsetFetchRequest {
        group_id: "hoard".into(),
        topics: None,
    }));
    let mut pipeline = Vec::new();
    for correlation_id in 0..REQUESTS {
        match correlation_id % 4 {
            0 | 2 => pipeline.extend_from_slice(&every_offset),
            1 => pipeline.extend(attacks::names_repeated(
                ApiKey::DescribeTopics,
                "wide",
                1,
                correlation_id,
            )),
            _ => pipeline.extend(attacks::names_repeated(
                ApiKey::Metadata,
                "wide",
                1,
                correlation_id,
            )),
        }
    }
    let pipeline = Bytes::from(pipeline);
    let attackers = (0..CONNECTIONS).map(|_| {
        let pipeline = pipeline.clone();
        let address = target.address().to_owned();
        tokio::spawn(async move {
            let mut socket = connect_reading_slowly(&address).await;
            socket
                .write_all(&pipeline)
                .await
                .expect("send the pipeline");
            socket
        })
    });
    let attackers = join_all(attackers).await;
    let metrics = &target.broker.metrics_address;
    // The replies fill the budget; the connections stop reading until their writers
    // give up on them.
    wait_for_gauge(metrics, "strata_response_memory_bytes", |bytes| {
        bytes >= QUEUED_BYTES_MIN
    })
    .await;
    wait_for_gauge(metrics, "strata_response_memory_bytes", |bytes| {
        bytes == 0.0
    })
    .await;
    for attacker in attackers {
        let mut socket = attacker.expect("every attacker sent its pipeline");
        read_until_closed(&mut socket).await;
    }
}

/// Each fan-out frame of [`attacks`], at this broker's `frame_bytes_max`, and a request
/// naming too many topics or groups, refused `LimitExceeded`; a produce naming a
/// partition twice, refused `InvalidRequest`.
async fn fan_out(target: &Target) {
    let mut attacker = Client::connect(target.address()).await;
    let long = attacks::LONG_NAME_BYTES;
    let mut refused = vec![
        (
            ApiKey::Produce,
            attacks::produce_fan_out(FRAME_BYTES_MAX, long, 1),
        ),
        (
            ApiKey::Fetch,
            attacks::fetch_fan_out(FRAME_BYTES_MAX, long, 2),
        ),
        (
            ApiKey::ListOffsets,
            attacks::list_offsets_fan_out(FRAME_BYTES_MAX, long, 3),
        ),
        (
            ApiKey::OffsetCommit,
            attacks::offset_commit_fan_out(FRAME_BYTES_MAX, "g", long, 4),
        ),
        (
            ApiKey::OffsetFetch,
            attacks::offset_fetch_fan_out(FRAME_BYTES_MAX, "g", long, 5),
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            attacks::heartbeat_fan_out(FRAME_BYTES_MAX, "g", long, 6),
        ),
    ];
    for (api, name) in [
        (ApiKey::Metadata, "steady"),
        (ApiKey::DescribeTopics, "steady"),
        (ApiKey::DescribeGroups, "g"),
        (ApiKey::DeleteGroups, "g"),
        (ApiKey::ListGroups, "stable"),
    ] {
        refused.push((api, attacks::names_repeated(api, name, 100_000, 7)));
    }
    for (api, frame) in refused {
        attacker.send_raw(&frame).await;
        let (_, result) = attacker.receive(api).await;
        let Err((code, message)) = result else {
            panic!("{api:?} fan-out answered: {result:?}")
        };
        assert_eq!(code, ErrorCode::LimitExceeded, "{api:?}: {message}");
    }
    let twice = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "steady".into(),
            partitions: vec![
                ProducePartition {
                    partition: 0,
                    records: batch_of("twice", 1).into(),
                };
                2
            ],
        }],
    };
    let Err((code, message)) = attacker.try_call(twice).await else {
        panic!("a produce naming a partition twice was answered")
    };
    assert_eq!(code, ErrorCode::InvalidRequest, "{message}");
}

/// A connection whose receive buffer is far smaller than one reply: a client that reads
/// nothing stalls the broker's writes at once.
async fn connect_reading_slowly(address: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let address = address.parse().expect("an IPv4 host:port");
    tokio::time::timeout(WAIT, socket.connect(address))
        .await
        .expect("connect timeout")
        .expect("connect")
}

/// Reads what the socket had taken, then the end: asserts the broker closed it.
async fn read_until_closed(socket: &mut TcpStream) {
    let mut sink = vec![0; 1 << 20];
    loop {
        match tokio::time::timeout(WAIT, socket.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("a client that read nothing was never closed"),
        }
    }
}

/// Scrapes the broker's metrics until gauge `name` has a value that `holds`.
async fn wait_for_gauge(address: &str, name: &str, holds: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape_metrics(address).await;
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok());
        if value.is_some_and(&holds) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {value:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the broker counts `count` parked fetches (the bystander's never wait).
async fn wait_for_fetches_waiting(target: &Target, count: usize) {
    let line = format!("strata_fetches_waiting {count}");
    wait_for_metrics(&target.broker.metrics_address, &[&line]).await;
}

/// The fetch response in `result`, every partition without error.
fn fetched(result: ResponseResult) -> FetchResponse {
    let Ok(Response::Fetch(response)) = result else {
        panic!("a fetch response: {result:?}")
    };
    for partition in &response.topics[0].partitions {
        assert_eq!(partition.error_code, ErrorCode::None, "{partition:?}");
    }
    response
}

/// A fetch of `partitions` of `watched` that waits up to `max_wait_ms` for a record.
fn long_poll(partitions: impl Iterator<Item = u32>, max_wait_ms: u32) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "watched".into(),
            partitions: partitions
                .map(|partition| FetchPartition {
                    partition,
                    current_leader_epoch: NO_EPOCH,
                    fetch_offset: 0,
                    last_fetched_epoch: NO_EPOCH,
                    partition_max_bytes: 1 << 20,
                })
                .collect(),
        }],
    })
}

/// A batch of about 256 KiB.
fn large_batch(round: usize) -> Bytes {
    let mut builder = strata_protocol::batch::BatchBuilder::new();
    let value = vec![b'x'; 1024];
    for _ in 0..256 {
        builder.push(1_700_000_000_000 + round as i64, None, Some(&value), &[]);
    }
    builder.finish()
}

/// A request as one frame's bytes.
fn encode(request: &Request) -> Bytes {
    let header = RequestHeader {
        api_key: request.api_key() as u16,
        api_version: 0,
        correlation_id: 1,
        client_id: "attacker".into(),
    };
    let mut out = BytesMut::new();
    FrameCodec::new(FRAME_BYTES_MAX)
        .encode(
            RequestFrame {
                header: &header,
                request,
            },
            &mut out,
        )
        .expect("a frame within frame_bytes_max");
    out.freeze()
}

async fn connect(address: &str) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(address))
        .await
        .expect("connect timeout")
        .expect("connect")
}

/// Reads until the broker closes `socket`, asserting it sends nothing first.
async fn assert_closed_without_answer(socket: &mut TcpStream) {
    let mut byte = [0; 1];
    match tokio::time::timeout(WAIT, socket.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(_)) => panic!("an answer to a frame that never arrived"),
        Err(_) => panic!("a stalled frame's connection was not closed"),
    }
}

/// The broker's peak resident set, from `VmHWM` in `/proc/<pid>/status`.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .expect("VmHWM in kB");
    kib << 10
}

/// Deleted files under `data_dir` (segments, their indexes) that the broker still holds,
/// by descriptor in `/proc/<pid>/fd` or by mapping in `/proc/<pid>/maps`.
fn deleted_segments_held(pid: u32, data_dir: &Path) -> Vec<String> {
    let data_dir = data_dir.to_string_lossy();
    let deleted_segment = |path: &str| path.starts_with(&*data_dir) && path.ends_with(" (deleted)");
    let mut held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the broker's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| deleted_segment(target))
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("the broker's maps");
    held.extend(
        maps.lines()
            .filter_map(|line| line.find('/').map(|start| &line[start..]))
            .filter(|path| deleted_segment(path))
            .map(str::to_owned),
    );
    held
}
