//! Helpers for Strata's cross-crate integration tests, which start real Strata processes
//! on loopback ports and talk to them over the wire protocol.
//!
//! The binaries are found in the same target profile directory as the running test, so
//! run `cargo build --workspace --bins` before `cargo test --workspace` (the README's test
//! command does both). Every wait here is bounded, and a broker process is killed when
//! its handle is dropped, so no test can leave a process behind or hang.
//!
//! # Layout
//! - This file: broker processes, the raw protocol [`Client`], records, bounded waits.
//! - `cli`: running the `strata` CLI ([`strata`], [`assert_fails`]).
//! - [`attacks`]: raw request frames that try to make a broker spend unbounded memory.
//! - [`child`]: a `strata` run kept as a child process, its output read line by line.
//! - [`disk_full`]: a small tmpfs for a data directory, filled and freed on demand.
//! - [`io`]: I/O layers over the real file system that fail chosen files or log fsyncs.
//! - [`group`]: consumer group requests, and a [`group::Member`] speaking them by hand.
//! - [`power_loss`]: a power loss of a broker process, from a log of what it fsync'd.
//! - [`chaos`]: the `strata-chaos` fault-injection harness and its checker.
//! - [`cluster`]: a cluster of brokers on loopback, its status, and cuts between voters.

pub mod attacks;
pub mod chaos;
pub mod child;
mod cli;
pub mod cluster;
pub mod disk_full;
pub mod group;
pub mod io;
pub mod power_loss;

pub use cli::{CliRun, assert_fails, broker_failing_to_start, run_bounded, strata};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use strata_protocol::batch::{BatchBuilder, Header};
use strata_protocol::codec::{FrameCodec, RequestFrame};
use strata_protocol::frame::{self, RequestHeader, ResponseResult};
use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Request, Response};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The path of a workspace binary built in the same profile as the running test.
///
/// # Panics
/// If the binary has not been built, with a message saying how to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A `strata-broker` child process on loopback ports chosen by the OS. Killed on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    /// The client address.
    pub address: String,
    /// The metrics address.
    pub metrics_address: String,
    data_dir: PathBuf,
    settings: Vec<String>,
    launch: Launch,
}

/// How a broker process is started beyond its data directory and settings.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary.
    pub binary: PathBuf,
    /// Flags given ahead of the settings.
    pub flags: Vec<std::ffi::OsString>,
    /// Whether `--listen` and `--metrics-listen` on port 0 and `--log-level warn` are
    /// added; `false` when `flags` give them.
    pub default_flags: bool,
    /// A file its stderr is appended to, or `None` to share the test's stderr.
    pub stderr: Option<PathBuf>,
}

impl Launch {
    /// `strata-broker` with the usual flags and `flags` on top.
    pub fn broker(flags: Vec<std::ffi::OsString>) -> Self {
        Self {
            binary: binary("strata-broker"),
            flags,
            default_flags: true,
            stderr: None,
        }
    }
}

/// Why a broker process did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// Its exit code, `None` if it was killed (or still running at the deadline).
    pub code: Option<i32>,
    /// What happened, with the end of its stderr when that went to a file.
    pub detail: String,
}

impl StartFailure {
    /// Whether it failed because a listen address was in use (exit code 4).
    pub fn address_in_use(&self) -> bool {
        self.code == Some(4)
    }
}

impl BrokerProcess {
    /// Starts a broker on `data_dir` with extra `--set KEY=VALUE` settings.
    ///
    /// # Panics
    /// If the broker does not start and print its address within [`WAIT`].
    pub fn start(data_dir: &Path, settings: &[&str]) -> Self {
        let settings: Vec<String> = settings
            .iter()
            .map(|setting| (*setting).to_owned())
            .collect();
        Self::spawn(data_dir.to_owned(), settings, Launch::broker(Vec::new()))
    }

    /// Starts `strata-recorded-broker` on `data_dir`, writing what it fsyncs to
    /// `sync_log` (see [`power_loss`]), with extra `--set KEY=VALUE` settings.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_recorded(data_dir: &Path, sync_log: &Path, settings: &[&str]) -> Self {
        let settings = settings
            .iter()
            .map(|setting| (*setting).to_owned())
            .collect();
        let launch = Launch {
            binary: binary("strata-recorded-broker"),
            ..Launch::broker(vec!["--sync-log".into(), sync_log.into()])
        };
        Self::spawn(data_dir.to_owned(), settings, launch)
    }

    /// Starts a broker as `launch` says, on `data_dir` with `--set KEY=VALUE` settings.
    ///
    /// # Errors
    /// [`StartFailure`] if it exits, or prints no address within [`WAIT`].
    pub fn try_start(
        data_dir: &Path,
        settings: Vec<String>,
        launch: Launch,
    ) -> Result<Self, StartFailure> {
        Self::try_spawn(data_dir.to_owned(), settings, launch)
    }

    fn spawn(data_dir: PathBuf, settings: Vec<String>, launch: Launch) -> Self {
        Self::try_spawn(data_dir, settings, launch)
            .unwrap_or_else(|failure| panic!("strata-broker did not start: {failure:?}"))
    }

    fn try_spawn(
        data_dir: PathBuf,
        settings: Vec<String>,
        launch: Launch,
    ) -> Result<Self, StartFailure> {
        let mut command = Command::new(&launch.binary);
        command.args(&launch.flags);
        if launch.default_flags {
            command.args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--log-level",
                "warn",
            ]);
        }
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped());
        match &launch.stderr {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::inherit());
            }
        }
        for setting in &settings {
            command.args(["--set", setting]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", launch.binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = match receiver.recv_timeout(WAIT) {
            Ok(line) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let status = child.wait();
                let log = launch
                    .stderr
                    .as_deref()
                    .map(|path| log_tail(path, 20))
                    .unwrap_or_default();
                return Err(StartFailure {
                    code: status.as_ref().ok().and_then(|status| status.code()),
                    detail: format!("{other:?}, status {status:?}\n{log}"),
                });
            }
        };
        // "strata-broker listening on ADDR (metrics on ADDR)"
        let words: Vec<&str> = line.split_whitespace().collect();
        let address = words
            .get(3)
            .expect("address in the startup line")
            .to_string();
        let metrics_address = words
            .get(6)
            .map(|word| word.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        Ok(Self {
            child,
            address,
            metrics_address,
            data_dir,
            settings,
            launch,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIGKILL` and reaps the process: nothing is flushed or closed.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `SIGTERM` and waits for a graceful exit; returns the exit code.
    ///
    /// # Panics
    /// If the process does not exit within [`WAIT`].
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: sending a signal to our own child's pid has no memory-safety effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for broker") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "broker ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new broker on the same data directory and settings (after a kill or
    /// terminate).
    pub fn restart(&mut self) {
        self.kill_9();
        *self = Self::spawn(
            self.data_dir.clone(),
            self.settings.clone(),
            self.launch.clone(),
        );
    }

    /// Makes later restarts listen on the client and metrics ports this process got,
    /// so that addresses given out before a restart stay valid after it.
    pub fn keep_ports(&mut self) {
        self.settings.push(format!("listen={}", self.address));
        self.settings
            .push(format!("metrics_listen={}", self.metrics_address));
    }
}

/// The last `lines` lines of the text file at `path` (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A raw protocol connection: one request at a time or pipelined.
#[derive(Debug)]
pub struct Client {
    framed: Framed<TcpStream, FrameCodec>,
    next_correlation_id: u32,
}

impl Client {
    /// Connects to `address`.
    ///
    /// # Panics
    /// If the connection fails within [`WAIT`].
    pub async fn connect(address: &str) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(address))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::over(stream)
    }

    /// Connects to `address` (an IPv4 `host:port`) with a socket receive buffer of
    /// `bytes`, fixed rather than grown by the kernel: a large answer then cannot fit in
    /// the socket queues, and the broker must wait for this client to read.
    ///
    /// # Panics
    /// If the connection fails within [`WAIT`].
    pub async fn connect_with_receive_buffer(address: &str, bytes: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let address = address.parse().expect("an IPv4 host:port");
        let stream = tokio::time::timeout(WAIT, socket.connect(address))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::over(stream)
    }

    fn over(stream: TcpStream) -> Self {
        Self {
            framed: Framed::new(stream, FrameCodec::new(64 << 20)),
            next_correlation_id: 1,
        }
    }

    /// Sends a request without waiting; returns its correlation id.
    pub async fn send(&mut self, request: Request) -> u32 {
        self.send_at(0, request).await
    }

    /// Sends a request at `api_version` without waiting; returns its correlation id.
    pub async fn send_at(&mut self, api_version: u16, request: Request) -> u32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: request.api_key() as u16,
            api_version,
            correlation_id,
            client_id: "strata-tests".into(),
        };
        self.framed
            .send(RequestFrame {
                header: &header,
                request: &request,
            })
            .await
            .expect("send request");
        correlation_id
    }

    /// Writes raw bytes to the socket.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed
            .get_mut()
            .write_all(bytes)
            .await
            .expect("write raw bytes");
    }

    /// Reads the next response frame, or `None` if the broker closed the connection.
    pub async fn receive_frame(&mut self) -> Option<Bytes> {
        match tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("response timeout")
        {
            Some(Ok(frame)) => Some(frame),
            Some(Err(_)) | None => None,
        }
    }

    /// Reads the next response, decoding it as `api_key`; returns its correlation id.
    pub async fn receive(&mut self, api_key: strata_protocol::ApiKey) -> (u32, ResponseResult) {
        self.receive_at(api_key, 0).await
    }

    /// Reads the next response, decoding it as `api_key` at `api_version`; returns its
    /// correlation id.
    pub async fn receive_at(
        &mut self,
        api_key: strata_protocol::ApiKey,
        api_version: u16,
    ) -> (u32, ResponseResult) {
        let payload = self
            .receive_frame()
            .await
            .expect("connection closed before the response");
        frame::decode_response(&payload, api_key as u16, api_version).expect("well-formed response")
    }

    /// Sends a request at `api_version` and waits for its response body or
    /// whole-request error.
    pub async fn try_call_at(
        &mut self,
        api_version: u16,
        request: impl Into<Request>,
    ) -> ResponseResult {
        let request = request.into();
        let api = request.api_key();
        let correlation_id = self.send_at(api_version, request).await;
        let (received, result) = self.receive_at(api, api_version).await;
        assert_eq!(received, correlation_id, "responses out of order");
        result
    }

    /// Sends a request and waits for its response body.
    ///
    /// # Panics
    /// If the request fails as a whole.
    pub async fn call(&mut self, request: impl Into<Request>) -> Response {
        let request = request.into();
        let api = request.api_key();
        self.try_call(request)
            .await
            .unwrap_or_else(|(code, message)| panic!("{api:?} failed: {code}: {message}"))
    }

    /// Sends a request and waits for its response body or whole-request error.
    pub async fn try_call(&mut self, request: impl Into<Request>) -> ResponseResult {
        let request = request.into();
        let api = request.api_key();
        let correlation_id = self.send(request).await;
        let (received, result) = self.receive(api).await;
        assert_eq!(received, correlation_id, "responses out of order");
        result
    }

    /// Creates `name` with `partitions` partitions (a multiple of 512), 512 at a time and
    /// with `durability = never`: a partition costs a few fsyncs, and one request for
    /// thousands could outlast a response wait on a busy disk.
    pub async fn create_wide_topic(&mut self, name: &str, partitions: u32) {
        self.create_topic(name, 512, &[("durability", "never")])
            .await;
        for count in (1024..=partitions).step_by(512) {
            let request = CreatePartitionsRequest {
                topics: vec![PartitionCountChange {
                    name: name.into(),
                    partition_count: count,
                }],
                timeout_ms: 10_000,
                validate_only: false,
            };
            let Response::CreatePartitions(response) = self.call(request).await else {
                panic!("not a create partitions response")
            };
            assert_eq!(response.topics[0].error_code, ErrorCode::None, "{count}");
        }
    }

    /// Creates a topic with one replica per partition and asserts success.
    pub async fn create_topic(&mut self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        self.create_replicated_topic(name, partitions, 1, configs)
            .await;
    }

    /// Creates a topic with `replication_factor` replicas per partition and asserts
    /// success.
    pub async fn create_replicated_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: &[(&str, &str)],
    ) {
        let configs = configs
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect();
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                partition_count: partitions,
                replication_factor,
                configs,
            }],
            timeout_ms: 10_000,
            validate_only: false,
        };
        let Response::CreateTopics(response) = self.call(request).await else {
            panic!("wrong response type")
        };
        let result = &response.topics[0];
        assert_eq!(
            result.error_code,
            ErrorCode::None,
            "create {name}: {:?}",
            result.error_message
        );
    }

    /// Asks for a new idempotent producer id and epoch, asserting success.
    pub async fn init_producer_id(&mut self) -> (i64, i16) {
        let Response::InitProducerId(response) = self
            .call(InitProducerIdRequest {
                producer_id: -1,
                producer_epoch: -1,
            })
            .await
        else {
            panic!("wrong response type")
        };
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "{:?}",
            response.error_message
        );
        (response.producer_id, response.producer_epoch)
    }

    /// Deletes a topic and asserts success.
    pub async fn delete_topic(&mut self, name: &str) {
        let request = DeleteTopicsRequest {
            names: vec![name.into()],
            timeout_ms: 10_000,
        };
        let Response::DeleteTopics(response) = self.call(request).await else {
            panic!("wrong response type")
        };
        let result = &response.topics[0];
        assert_eq!(
            result.error_code,
            ErrorCode::None,
            "delete {name}: {:?}",
            result.error_message
        );
    }

    /// Produces `records` to one partition and returns the partition's response.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        acks: Acks,
        records: Bytes,
    ) -> ProducePartitionResponse {
        let request = ProduceRequest {
            acks,
            timeout_ms: 10_000,
            topics: vec![ProduceTopic {
                name: topic.into(),
                partitions: vec![ProducePartition {
                    partition,
                    records: records.into(),
                }],
            }],
        };
        let Response::Produce(mut response) = self.call(request).await else {
            panic!("wrong response type")
        };
        response.topics.remove(0).partitions.remove(0)
    }

    /// Fetches one partition.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> FetchPartitionResponse {
        let request = FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes: 32 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    current_leader_epoch: NO_EPOCH,
                    fetch_offset: offset,
                    last_fetched_epoch: NO_EPOCH,
                    partition_max_bytes: 16 << 20,
                }],
            }],
        };
        let Response::Fetch(mut response) = self.call(request).await else {
            panic!("wrong response type")
        };
        response.topics.remove(0).partitions.remove(0)
    }

    /// Reads every record of a partition from `offset` up to the high watermark.
    pub async fn read_all(
        &mut self,
        topic: &str,
        partition: u32,
        mut offset: u64,
    ) -> Vec<OwnedRecord> {
        let mut records = Vec::new();
        loop {
            let response = self.fetch(topic, partition, offset, 0, 0).await;
            assert_eq!(
                response.error_code,
                ErrorCode::None,
                "fetch {topic}/{partition} at {offset}"
            );
            let batch_records = decode_records(&response.records);
            records.extend(
                batch_records
                    .into_iter()
                    .filter(|record| record.offset >= offset),
            );
            match records.last() {
                Some(last) if last.offset + 1 < response.high_watermark => offset = last.offset + 1,
                _ => return records,
            }
        }
    }
}

/// A record copied out of a batch, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Its offset.
    pub offset: u64,
    /// Its timestamp.
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Decodes every record in a run of batches, checking each batch's CRC.
///
/// # Panics
/// If a batch is corrupt.
pub fn decode_records(batches: &[u8]) -> Vec<OwnedRecord> {
    let mut records = Vec::new();
    for view in strata_protocol::batch::Batches::new(batches) {
        let view = view.expect("whole batches");
        strata_protocol::batch::verify_crc(view.bytes).expect("batch CRC");
        for record in view.records() {
            let record = record.expect("well-formed record");
            records.push(OwnedRecord {
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
                headers: record
                    .headers
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                    .collect(),
            });
        }
    }
    records
}

/// Builds a batch of records with values `"{prefix}-{index}"`, keys `"k{index}"` and one
/// header.
pub fn batch_of(prefix: &str, count: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    for index in 0..count {
        let value = format!("{prefix}-{index}");
        let key = format!("k{index}");
        builder.push(
            1_700_000_000_000 + index as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[Header {
                key: "origin",
                value: Some(b"test"),
            }],
        );
    }
    builder.finish()
}

/// [`batch_of`] numbered as a batch of idempotent producer `id` (producer id, epoch),
/// starting at `sequence`.
pub fn idempotent_batch_of(prefix: &str, count: usize, id: (i64, i16), sequence: i32) -> Bytes {
    let mut bytes = batch_of(prefix, count).to_vec();
    strata_protocol::batch::stamp_producer(&mut bytes, id.0, id.1, sequence);
    Bytes::from(bytes)
}

/// The values of `records` as strings.
pub fn values(records: &[OwnedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            String::from_utf8(record.value.clone().unwrap_or_default()).expect("utf-8 value")
        })
        .collect()
}

/// The address of a loopback port that nothing listens on: connecting to it is
/// refused at once. Bound and released here, so only a bind racing this test could take
/// it in between.
pub fn unreachable_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A fresh temporary data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("temp dir")
}

/// Encodes a request frame by hand (for tests that corrupt it).
pub fn request_frame(api_key: u16, api_version: u16, correlation_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::write_frame(&mut out, |out| {
        strata_protocol::wire::Wire::encode(
            &RequestHeader {
                api_key,
                api_version,
                correlation_id,
                client_id: "raw".into(),
            },
            out,
        );
        strata_protocol::wire::Sink::put_slice(out, body);
    });
    out.to_vec()
}

/// The longest a whole client test may run.
pub const TEST_TIME_MAX: Duration = Duration::from_secs(120);

/// Runs `future`, failing the test if it takes longer than [`TEST_TIME_MAX`].
///
/// # Panics
/// At the time limit.
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIME_MAX, future)
        .await
        .expect("test time limit")
}

/// Polls `consumer` until at least `count` records arrived.
///
/// # Panics
/// If a poll fails.
pub async fn read_records(
    consumer: &mut strata_client::Consumer,
    count: usize,
) -> Vec<strata_client::ConsumerRecord> {
    let mut records = Vec::new();
    while records.len() < count {
        records.extend(consumer.poll(Duration::from_secs(1)).await.expect("poll"));
    }
    records
}

/// Produces `per_partition` records with values `"{partition}-{index}"` to each of
/// `topic`'s first `partitions` partitions, interleaved, and waits until all are
/// acknowledged.
///
/// # Panics
/// If a record fails.
pub async fn produce_to_partitions(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    per_partition: u32,
) {
    use strata_client::{Producer, ProducerConfig, ProducerRecord};
    let producer = Producer::new(ProducerConfig::new(bootstrap)).expect("producer");
    let mut acks = Vec::new();
    for index in 0..per_partition {
        for partition in 0..partitions {
            let record =
                ProducerRecord::new(topic, format!("{partition}-{index}")).partition(partition);
            acks.push(producer.send(record).await.expect("queue a record"));
        }
    }
    for ack in acks {
        ack.await.expect("record delivered");
    }
    producer.close().await;
}

/// Asserts that `consumer` has nothing more to return: a poll that waits 300 ms, long
/// enough for a fetch that finds more to answer, comes back empty.
///
/// # Panics
/// If it returns records, saying `why`.
pub async fn assert_polls_nothing(consumer: &mut strata_client::Consumer, why: &str) {
    let records = consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("poll");
    assert!(records.is_empty(), "{why}: {records:?}");
}

/// Polls `condition` until it holds, saying `what` it waits for if it does not.
///
/// # Panics
/// If it does not hold within [`WAIT`].
pub async fn wait_until(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{WAIT:?} passed, still waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Scrapes a broker's metrics until every line of `expected` is there, whole.
///
/// # Panics
/// If they are not all there within [`WAIT`].
pub async fn wait_for_metrics(address: &str, expected: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape_metrics(address).await;
        let found = expected
            .iter()
            .all(|line| text.lines().any(|candidate| candidate == *line));
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "missing {expected:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /metrics` from a broker's metrics address; returns the body.
///
/// # Panics
/// If the request fails or the status is not 200.
pub async fn scrape_metrics(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::time::timeout(WAIT, TcpStream::connect(address))
        .await
        .expect("metrics connect timeout")
        .expect("metrics connect");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: strata\r\n\r\n")
        .await
        .expect("metrics request");
    let mut text = String::new();
    tokio::time::timeout(WAIT, http.read_to_string(&mut text))
        .await
        .expect("metrics response timeout")
        .expect("metrics response");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}
