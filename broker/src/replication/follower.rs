//! The follower's side: one fetcher task per leader broker, fetching every partition
//! this broker follows from it in one request (Kafka's replica fetcher threads).
//!
//! Each round sends, per partition, the log end offset, the epoch of the last batch,
//! the durable offset and the leader epoch it follows. The leader answers with batches,
//! or with where the log diverges (KIP-279), or with an error:
//! - batches are appended as they are (`Partition::append_replicated`), and the
//!   leader's high watermark taken, bounded by the log end;
//! - a divergence truncates the log there, and the next round fetches from it;
//! - an offset out of range truncates to the leader's log end (this log is longer) or
//!   restarts the log at the leader's log start (this log is older than the leader's);
//! - an epoch error or "not the leader" waits for the metadata to move on.
//!
//! Each answer is applied on the blocking pool (appends write, truncations fsync). The
//! next request goes out as soon as the answer is applied, and the leader parks it
//! until it appends, so a batch reaches the follower a wake-up after it is written. A
//! change to the partitions fetched from a leader gives up the parked request at once.
//! A broken connection is opened again after a backoff that grows to a second.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use strata_protocol::codec::{FrameCodec, RequestFrame};
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::messages::{
    NO_EPOCH, ReplicaFetchPartition, ReplicaFetchPartitionResponse, ReplicaFetchRequest,
    ReplicaFetchResponse, ReplicaFetchTopic,
};
use strata_protocol::{ApiKey, ErrorCode, Request, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::Followed;
use crate::broker::Broker;
use crate::cluster::listener::REPLICATION_PREAMBLE;
use crate::partition::{Partition, PartitionError};
use crate::replication::engine::Diverging;

/// How long a follower under `every_batch` waits for its fsync before it fetches again.
const SETTLE_MAX: Duration = Duration::from_millis(100);
/// How long the leader may park a fetch with nothing to send.
const MAX_WAIT_MS: u32 = 500;
/// Bytes asked for per partition, and per request.
const PARTITION_MAX_BYTES: u32 = 4 * 1024 * 1024;
const REQUEST_MAX_BYTES: u32 = 16 * 1024 * 1024;
/// The largest response frame accepted: the request's bytes plus one batch past them.
const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Connecting, and each request beyond its `max_wait_ms`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

type Connection = Framed<TcpStream, FrameCodec>;

/// Fetches from `leader` the partitions `followed` names until `stop` fires.
pub(super) async fn run(
    broker: Arc<Broker>,
    leader: u32,
    mut followed: watch::Receiver<Vec<Followed>>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let mut connection: Option<Connection> = None;
    let mut correlation_id = 0u32;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let partitions = followed.borrow_and_update().clone();
        if partitions.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = followed.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let round = async {
            let open = match connection.take() {
                Some(open) => open,
                None => connect(&broker, leader).await?,
            };
            correlation_id = correlation_id.wrapping_add(1);
            let (open, response) =
                call((&broker, leader), open, correlation_id, &partitions).await?;
            connection = Some(open);
            Ok::<_, String>(response)
        };
        let fetched = tokio::select! {
            () = stop.cancelled() => return,
            fetched = round => fetched,
            // A partition added (a new leader here) must not wait for the parked fetch
            // of the others, up to `MAX_WAIT_MS`: give it up, with its connection, whose
            // answer would now come out of step.
            changed = followed.changed() => {
                if changed.is_err() {
                    return;
                }
                connection = None;
                continue;
            }
        };
        // Appends write and truncations fsync: off the runtime's threads, and never
        // abandoned half way by a change of what is fetched.
        let outcome = match fetched {
            Ok(response) => {
                let applying = partitions.clone();
                let applied =
                    tokio::task::spawn_blocking(move || apply(leader, &applying, &response))
                        .await
                        .map_err(|error| format!("applying a replica fetch panicked: {error}"));
                match applied {
                    Ok((progressed, appended)) => {
                        for partition in appended {
                            partition.settle_durable(SETTLE_MAX).await;
                        }
                        Ok(progressed)
                    }
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(true) => backoff = BACKOFF_MIN,
            Ok(false) => {
                // Nothing moved (every partition answered an error): wait a little,
                // or for the metadata to change what this broker follows.
                pause(&stop, &mut followed, &mut backoff).await;
            }
            Err(error) => {
                tracing::debug!(leader, %error, "replica fetch failed; retrying");
                connection = None;
                pause(&stop, &mut followed, &mut backoff).await;
            }
        }
    }
}

async fn pause(
    stop: &CancellationToken,
    followed: &mut watch::Receiver<Vec<Followed>>,
    backoff: &mut Duration,
) {
    tokio::select! {
        () = stop.cancelled() => {}
        _ = followed.changed() => {}
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

/// Opens a connection to `leader`'s cluster listener: at the address this broker's
/// `peers` gives it, the one the metadata quorum dials too (so a network cut between
/// two brokers cuts both), else at the address it registered.
async fn connect(broker: &Broker, leader: u32) -> Result<Connection, String> {
    let configured = (!broker.config.peers.is_empty())
        .then(|| broker.config.voters().remove(&u64::from(leader)))
        .flatten();
    let address = configured
        .or_else(|| {
            broker
                .cluster
                .image()
                .brokers
                .get(&leader)
                .map(|registered| registered.cluster_address.clone())
        })
        .ok_or_else(|| format!("broker {leader} is not registered"))?;
    let mut stream = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("cannot set TCP_NODELAY: {error}"))?;
    stream
        .write_all(&REPLICATION_PREAMBLE)
        .await
        .map_err(|error| format!("cannot write to {address}: {error}"))?;
    Ok(Framed::new(stream, FrameCodec::new(FRAME_BYTES_MAX)))
}

fn request(broker: &Broker, leader: u32, partitions: &[Followed]) -> ReplicaFetchRequest {
    let mut topics: Vec<ReplicaFetchTopic> = Vec::new();
    // A partition this broker took the lead of since must not report its log end to
    // its old leader as a follower's progress.
    for followed in partitions
        .iter()
        .filter(|followed| followed.partition.follows((leader, followed.leader_epoch)))
    {
        let wanted = ReplicaFetchPartition {
            partition: followed.partition.index(),
            current_leader_epoch: followed.leader_epoch,
            fetch_offset: followed.partition.log_end_offset(),
            last_fetched_epoch: followed.partition.latest_epoch().unwrap_or(NO_EPOCH),
            durable_offset: followed.partition.durable_offset(),
            partition_max_bytes: PARTITION_MAX_BYTES,
        };
        match topics
            .iter_mut()
            .find(|topic| topic.name == followed.topic && topic.topic_id == followed.topic_id)
        {
            Some(topic) => topic.partitions.push(wanted),
            None => topics.push(ReplicaFetchTopic {
                name: followed.topic.clone(),
                topic_id: followed.topic_id,
                partitions: vec![wanted],
            }),
        }
    }
    ReplicaFetchRequest {
        replica_id: broker.cluster.node_id(),
        replica_incarnation: broker.cluster.incarnation().unwrap_or(0),
        max_wait_ms: MAX_WAIT_MS,
        max_bytes: REQUEST_MAX_BYTES,
        topics,
    }
}

/// Sends one fetch and reads its answer.
async fn call(
    (broker, leader): (&Broker, u32),
    mut connection: Connection,
    correlation_id: u32,
    partitions: &[Followed],
) -> Result<(Connection, ReplicaFetchResponse), String> {
    let header = RequestHeader {
        api_key: ApiKey::ReplicaFetch as u16,
        api_version: 0,
        correlation_id,
        client_id: format!("replica-{}", broker.cluster.node_id()),
    };
    let request = Request::ReplicaFetch(request(broker, leader, partitions));
    let timeout = CALL_TIMEOUT + Duration::from_millis(u64::from(MAX_WAIT_MS));
    let exchange = async {
        connection
            .send(RequestFrame {
                header: &header,
                request: &request,
            })
            .await
            .map_err(|error| format!("cannot send a replica fetch: {error}"))?;
        let payload = connection
            .next()
            .await
            .ok_or("the leader closed the connection")?
            .map_err(|error| format!("cannot read a replica fetch response: {error}"))?;
        let (answered, response) = frame::decode_response(&payload, ApiKey::ReplicaFetch as u16, 0)
            .map_err(|error| format!("undecodable replica fetch response: {error}"))?;
        if answered != correlation_id {
            return Err(format!(
                "response {answered} to request {correlation_id}: the connection is out of step"
            ));
        }
        match response {
            Ok(Response::ReplicaFetch(response)) => Ok(response),
            Ok(other) => Err(format!(
                "a {:?} response to a replica fetch",
                other.api_key()
            )),
            Err((code, message)) => Err(format!("{}: {message}", code.name())),
        }
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "the replica fetch timed out".to_owned())??;
    Ok((connection, response))
}

/// Applies a response; true if any partition answered without an error, and the
/// partitions it appended to. Each change to
/// a partition is made only if this broker still follows it from `leader` at the epoch
/// it fetched at (the metadata may have moved on while the fetch was out), checked under
/// the partition's role lock.
fn apply(
    leader: u32,
    partitions: &[Followed],
    response: &ReplicaFetchResponse,
) -> (bool, Vec<Arc<Partition>>) {
    let mut progressed = false;
    let mut appended = Vec::new();
    for topic in &response.topics {
        for answer in &topic.partitions {
            let Some(followed) = partitions.iter().find(|followed| {
                followed.topic == topic.name && followed.partition.index() == answer.partition
            }) else {
                continue;
            };
            if !answer.records.is_empty() {
                appended.push(followed.partition.clone());
            }
            match apply_partition(followed, (leader, followed.leader_epoch), answer) {
                Ok(moved) => progressed |= moved,
                Err(error) => {
                    tracing::warn!(topic = %followed.topic, partition = answer.partition, leader, %error, "cannot apply the leader's answer to a replica fetch");
                }
            }
        }
    }
    (progressed, appended)
}

/// Applies one partition's answer; true unless it was an error from the leader.
fn apply_partition(
    followed: &Followed,
    following: (u32, u32),
    answer: &ReplicaFetchPartitionResponse,
) -> Result<bool, PartitionError> {
    let partition = &followed.partition;
    match answer.error_code {
        ErrorCode::None if answer.diverging_epoch != NO_EPOCH => {
            let diverging = Diverging {
                epoch: Some(answer.diverging_epoch),
                end_offset: answer.diverging_end_offset,
            };
            partition.truncate_diverging(diverging, following)?;
            Ok(true)
        }
        ErrorCode::None => {
            if !answer.records.is_empty()
                && partition
                    .append_replicated(&answer.records, following)?
                    .is_none()
            {
                return Ok(true);
            }
            if partition.follows(following) {
                partition.follow_high_watermark(answer.high_watermark);
            }
            Ok(true)
        }
        ErrorCode::OffsetOutOfRange => {
            let log_end = partition.log_end_offset();
            if log_end > answer.log_end_offset {
                partition.truncate_to(answer.log_end_offset, following)?;
            } else if log_end < answer.log_start_offset {
                partition.restart_at(answer.log_start_offset, following)?;
            }
            Ok(true)
        }
        code => {
            tracing::debug!(topic = %followed.topic, partition = answer.partition, code = code.name(), "the leader refused a replica fetch");
            Ok(false)
        }
    }
}
