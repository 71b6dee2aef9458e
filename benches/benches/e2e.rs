//! End to end in one process: `strata-client` producer -> in-process broker -> consumer
//! over loopback TCP, against a plain loopback TCP copy of the same bytes in the same run.
//!
//! One tokio runtime with 2 worker threads runs the broker, the clients and the baseline;
//! every timed iteration runs as a task on it, so the criterion thread only waits.
//!
//! - `e2e_produce`: `Producer::send` of one iteration's records (acks = leader, the
//!   client's default batching: 1 MiB batches, linger 5 ms), then `flush` and every
//!   delivery awaited. Each iteration writes into a fresh 1-partition topic, deleted
//!   afterwards (untimed); the producer's metadata lookup for the new topic, one
//!   loopback round trip, is timed.
//! - `e2e_consume`: a fresh `Consumer` (connected and given metadata untimed) assigned
//!   at offset 0 polls until it has returned one iteration's records from a topic that
//!   holds exactly that many (written once, before the group).
//! - `e2e_roundtrip`: a fresh topic, a consumer waiting at offset 0 in its own task, and
//!   the producer sending; timed until the consumer has every record.
//! - `e2e_loopback`: the baseline, a connected `TcpStream` pair; a writer task writes the
//!   same payload bytes in 1 MiB writes while the timed task reads them into a 1 MiB buffer.
//!
//! Throughput counts payload bytes (record values; no keys or headers), so the Strata
//! and loopback figures compare the same bytes. The broker runs with
//! `durability = never` (the default) in a temporary directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use strata_broker::config::Config;
use strata_broker::server::Server;
use strata_client::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const RECORD_SIZES: [usize; 2] = [1024, 100];
const WORKER_THREADS: usize = 2;
/// Loopback writes and reads move this much at a time.
const COPY_CHUNK_BYTES: usize = 1 << 20;
/// No poll in a healthy run comes close; a hang fails the bench instead of stalling it.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one iteration moves: `records` values of `size` bytes.
#[derive(Clone)]
struct Workload {
    size: usize,
    records: u64,
    value: Bytes,
}

impl Workload {
    /// 64 MiB of 1 KiB records; 16 MiB of smaller ones, which are slower per byte and
    /// would otherwise stretch the run.
    fn new(size: usize) -> Self {
        let bytes: usize = if size >= 1024 { 64 << 20 } else { 16 << 20 };
        Self {
            size,
            records: (bytes / size) as u64,
            value: Bytes::from(vec![0xA5u8; size]),
        }
    }

    fn bytes(&self) -> u64 {
        self.records * self.size as u64
    }

    fn throughput(&self) -> Throughput {
        Throughput::ElementsAndBytes {
            elements: self.records,
            bytes: self.bytes(),
        }
    }
}

/// The clients every iteration shares; cheap to clone into a task.
#[derive(Clone)]
struct Clients {
    bootstrap: String,
    admin: Admin,
    producer: Producer,
    topics_created: Arc<AtomicU64>,
}

impl Clients {
    async fn fresh_topic(&self, label: &str) -> TopicPartition {
        let index = self.topics_created.fetch_add(1, Ordering::Relaxed);
        let name = format!("{label}-{index}");
        self.admin
            .create_topic(NewTopic::new(&name, 1))
            .await
            .expect("create topic");
        TopicPartition::new(name, 0)
    }

    async fn delete(&self, tp: &TopicPartition) {
        self.admin
            .delete_topic(&tp.topic)
            .await
            .expect("delete topic");
    }

    /// Sends every record, flushes (so the last batch does not wait out the linger)
    /// and checks each acknowledgement.
    async fn produce(&self, tp: &TopicPartition, workload: &Workload) {
        let mut deliveries = Vec::with_capacity(workload.records as usize);
        for _ in 0..workload.records {
            let record = ProducerRecord::new(tp.topic.clone(), workload.value.clone());
            deliveries.push(self.producer.send(record).await.expect("send"));
        }
        self.producer.flush().await;
        let mut offset_last = None;
        for delivery in deliveries {
            offset_last = delivery.await.expect("delivered").offset;
        }
        assert_eq!(offset_last, Some(workload.records - 1));
    }

    /// A consumer of `tp` from offset 0, already connected and holding the topic's
    /// metadata, so that neither lands in a timed region.
    async fn consumer_at_start(&self, tp: &TopicPartition) -> Consumer {
        let mut consumer =
            Consumer::new(ConsumerConfig::new(&self.bootstrap)).expect("consumer config");
        consumer.assign(std::slice::from_ref(tp));
        // A ListOffsets round trip connects and fetches the metadata. (`end_offsets`
        // takes `&self`, and `Consumer` is not `Sync`, so its future is not `Send`.)
        consumer
            .seek_to_beginning(std::slice::from_ref(tp))
            .await
            .expect("seek to the log start");
        consumer
    }
}

/// Polls until `workload.records` records arrived; checks their offsets and sizes.
async fn consume(mut consumer: Consumer, workload: Workload) {
    let mut received: u64 = 0;
    let mut value_bytes: u64 = 0;
    while received < workload.records {
        let records = consumer.poll(POLL_TIMEOUT).await.expect("poll");
        assert!(!records.is_empty(), "no record within {POLL_TIMEOUT:?}");
        for record in records {
            assert_eq!(record.offset, received);
            received += 1;
            value_bytes += record.value.map_or(0, |value| value.len() as u64);
        }
    }
    assert_eq!(value_bytes, workload.bytes());
}

async fn produce_iterations(clients: Clients, workload: Workload, iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let tp = clients.fresh_topic("produce").await;
        let start = Instant::now();
        clients.produce(&tp, &workload).await;
        elapsed += start.elapsed();
        clients.delete(&tp).await;
    }
    elapsed
}

async fn consume_iterations(
    clients: Clients,
    tp: TopicPartition,
    workload: Workload,
    iters: u64,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let consumer = clients.consumer_at_start(&tp).await;
        let start = Instant::now();
        consume(consumer, workload.clone()).await;
        elapsed += start.elapsed();
    }
    elapsed
}

async fn roundtrip_iterations(clients: Clients, workload: Workload, iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let tp = clients.fresh_topic("roundtrip").await;
        let consumer = clients.consumer_at_start(&tp).await;
        let start = Instant::now();
        let consumed = tokio::spawn(consume(consumer, workload.clone()));
        clients.produce(&tp, &workload).await;
        consumed.await.expect("consumer task");
        elapsed += start.elapsed();
        clients.delete(&tp).await;
    }
    elapsed
}

/// A connected loopback pair: (writer, reader).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let (writer, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    (writer.expect("connect"), accepted.expect("accept").0)
}

/// Copies `bytes` from writer to reader `iters` times; returns the pair for the next call.
async fn loopback_iterations(
    pair: (TcpStream, TcpStream),
    bytes: u64,
    iters: u64,
) -> ((TcpStream, TcpStream), Duration) {
    let (mut writer, mut reader) = pair;
    let chunk = Bytes::from(vec![0xA5u8; COPY_CHUNK_BYTES]);
    let mut buffer = vec![0u8; COPY_CHUNK_BYTES];
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let chunk = chunk.clone();
        let written = tokio::spawn(async move {
            let mut left = bytes;
            while left > 0 {
                let now = left.min(COPY_CHUNK_BYTES as u64) as usize;
                writer.write_all(&chunk[..now]).await.expect("write");
                left -= now as u64;
            }
            writer
        });
        let mut read: u64 = 0;
        while read < bytes {
            let count = reader.read(&mut buffer).await.expect("read");
            assert!(count > 0, "loopback closed early");
            read += count as u64;
        }
        writer = written.await.expect("writer task");
        elapsed += start.elapsed();
    }
    ((writer, reader), elapsed)
}

/// Runs `future` as a task on the runtime's workers and waits for it.
fn run<T: Send + 'static>(
    runtime: &Runtime,
    future: impl Future<Output = T> + Send + 'static,
) -> T {
    runtime.block_on(runtime.spawn(future)).expect("bench task")
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    // An iteration takes tens to hundreds of ms: flat sampling keeps the sample count,
    // and so the run time, bounded.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn bench_produce(c: &mut Criterion, runtime: &Runtime, clients: &Clients) {
    let mut group = configure(c, "e2e_produce");
    for size in RECORD_SIZES {
        let workload = Workload::new(size);
        group.throughput(workload.throughput());
        group.bench_function(BenchmarkId::new("strata", size), |b| {
            b.iter_custom(|iters| {
                run(
                    runtime,
                    produce_iterations(clients.clone(), workload.clone(), iters),
                )
            });
        });
    }
    group.finish();
}

fn bench_consume(c: &mut Criterion, runtime: &Runtime, clients: &Clients) {
    let mut group = configure(c, "e2e_consume");
    for size in RECORD_SIZES {
        let workload = Workload::new(size);
        let tp = run(runtime, {
            let (clients, workload) = (clients.clone(), workload.clone());
            async move {
                let tp = clients.fresh_topic("consume").await;
                clients.produce(&tp, &workload).await;
                tp
            }
        });
        group.throughput(workload.throughput());
        group.bench_function(BenchmarkId::new("strata", size), |b| {
            b.iter_custom(|iters| {
                let task = consume_iterations(clients.clone(), tp.clone(), workload.clone(), iters);
                run(runtime, task)
            });
        });
        run(runtime, {
            let clients = clients.clone();
            async move { clients.delete(&tp).await }
        });
    }
    group.finish();
}

fn bench_roundtrip(c: &mut Criterion, runtime: &Runtime, clients: &Clients) {
    let mut group = configure(c, "e2e_roundtrip");
    for size in RECORD_SIZES {
        let workload = Workload::new(size);
        group.throughput(workload.throughput());
        group.bench_function(BenchmarkId::new("strata", size), |b| {
            b.iter_custom(|iters| {
                run(
                    runtime,
                    roundtrip_iterations(clients.clone(), workload.clone(), iters),
                )
            });
        });
    }
    group.finish();
}

fn bench_loopback(c: &mut Criterion, runtime: &Runtime) {
    let mut group = configure(c, "e2e_loopback");
    let mut pair = Some(runtime.block_on(tcp_pair()));
    for size in RECORD_SIZES {
        let bytes = Workload::new(size).bytes();
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::new("tcp_copy", size), |b| {
            b.iter_custom(|iters| {
                let taken = pair.take().expect("the pair is returned after each call");
                let (returned, elapsed) = run(runtime, loopback_iterations(taken, bytes, iters));
                pair = Some(returned);
                elapsed
            });
        });
    }
    group.finish();
}

fn start_broker(runtime: &Runtime, data_dir: &std::path::Path) -> Server {
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        metrics_listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    runtime
        .block_on(Server::start(config))
        .expect("broker start")
}

fn clients(runtime: &Runtime, server: &Server) -> Clients {
    // The clients spawn their background tasks on the runtime they are created in.
    let _entered = runtime.enter();
    let bootstrap = server.address.to_string();
    Clients {
        admin: Admin::new(ClientConfig::new(&bootstrap)).expect("admin config"),
        producer: Producer::new(ProducerConfig {
            acks: Acks::Leader,
            ..ProducerConfig::new(&bootstrap)
        })
        .expect("producer config"),
        bootstrap,
        topics_created: Arc::new(AtomicU64::new(0)),
    }
}

fn e2e(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_broker(&runtime, data_dir.path());
    let clients = clients(&runtime, &server);
    bench_loopback(c, &runtime);
    bench_produce(c, &runtime, &clients);
    bench_consume(c, &runtime, &clients);
    bench_roundtrip(c, &runtime, &clients);
    runtime.block_on(clients.producer.close());
    runtime.block_on(server.shutdown());
}

criterion_group!(benches, e2e);
criterion_main!(benches);
