//! Request handlers, one file per API. A handler turns a decoded request into calls on
//! the broker's domain types and builds the response; it never parses bytes.

mod admin;
mod alter_partition_reassignments;
mod alter_topic_configs;
mod api_versions;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_topics;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod limits;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod replica_fetch;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use strata_protocol::limits::FRAME_BYTES_MAX_LIMIT;
use strata_protocol::{ApiKey, ErrorCode, Request, Response, frame};
use strata_storage::FileRange;

use crate::broker::Broker;
use crate::connection::Origin;

pub use fetch::FetchWatches;

/// What goes back to the client for one request.
#[derive(Debug)]
pub enum Reply {
    /// A response body.
    Response(Response),
    /// A response body whose record bytes lie in these segment file ranges too, so the
    /// writer may send them with `sendfile` (see `crate::send`).
    Records(Response, Vec<FileRange>),
    /// The whole request failed.
    Error(ErrorCode, String),
    /// Nothing is sent (a produce with `acks = none`).
    Nothing,
}

impl Reply {
    /// The bytes this reply holds in memory until it is written, as its encoded size at
    /// `api_version`: a response's payload less its record bytes that lie in segment
    /// files (mapped, so they cost no heap), or an error's message.
    pub fn heap_bytes(&self, api_version: u16) -> usize {
        match self {
            Reply::Response(response) => frame::response_payload_bytes(response, api_version),
            Reply::Records(response, files) => {
                let in_files: usize = files.iter().map(|range| range.bytes().len()).sum();
                frame::response_payload_bytes(response, api_version).saturating_sub(in_files)
            }
            Reply::Error(_, message) => message.len(),
            Reply::Nothing => 0,
        }
    }
}

impl<T: Into<Response>> From<T> for Reply {
    fn from(response: T) -> Self {
        Reply::Response(response.into())
    }
}

/// A request after its in-order part ran.
pub enum Started {
    /// The reply is known.
    Ready(Reply),
    /// The rest only waits (a long-poll fetch, the durability wait of an `acks = all`
    /// produce or of a commit) and may run concurrently with later requests.
    Waiting(Pin<Box<dyn Future<Output = Reply> + Send>>),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Ready(reply) => formatter.debug_tuple("Ready").field(reply).finish(),
            Started::Waiting(_) => formatter.write_str("Waiting"),
        }
    }
}

impl<T: Into<Reply>> From<T> for Started {
    fn from(reply: T) -> Self {
        Started::Ready(reply.into())
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The client id from the request header.
    pub id: &'a str,
    /// The peer address of the connection.
    pub address: &'a str,
    /// What the connection's parked fetches watch.
    pub fetch_watches: &'a Arc<FetchWatches>,
    /// Which listener the connection came in on.
    pub origin: Origin,
    /// The request's API version, from its header: its response is encoded at it.
    pub api_version: u16,
}

/// Runs the part of a request that reads or changes state. The connection calls this for
/// its requests one at a time, in arrival order, so a client that pipelines a produce
/// behind another (or behind a topic creation) sees them applied in the order it sent
/// them. Only waiting is left for later.
///
/// Every reply is measured before it leaves: a response larger than its limit (see
/// [`response_bytes_max`]) is replaced by `LimitExceeded`, so no reply reaches the
/// encoder's 4 GiB frame limit.
///
/// # Cancel safety
/// Not cancel safe: a produce may be half appended when dropped. The connection never
/// drops it.
pub async fn start(broker: &Arc<Broker>, request: Request, client: &Client<'_>) -> Started {
    let (limit, key) = response_bytes_max(broker, request.api_key());
    let api_version = client.api_version;
    match dispatch(broker, request, client).await {
        Started::Ready(reply) => Started::Ready(within(reply, api_version, limit, key)),
        Started::Waiting(wait) => Started::Waiting(Box::pin(async move {
            within(wait.await, api_version, limit, key)
        })),
    }
}

/// The largest response payload an API may send, and the name of that limit. A fetch's
/// size is set by `fetch_response_bytes_max` and its partitions' batches, and a client
/// reads frames larger than the broker's `frame_bytes_max` for it; every other response
/// must fit `frame_bytes_max`.
fn response_bytes_max(broker: &Broker, api: ApiKey) -> (usize, &'static str) {
    match api {
        ApiKey::Fetch | ApiKey::ReplicaFetch => (FRAME_BYTES_MAX_LIMIT, "the frame length limit"),
        _ => (broker.config.frame_bytes_max, "frame_bytes_max"),
    }
}

/// `reply`, or `LimitExceeded` if its response at `api_version` is over `limit` bytes.
/// Counting walks the response without copying it; a fetch's records are counted by
/// length.
fn within(reply: Reply, api_version: u16, limit: usize, key: &str) -> Reply {
    let (Reply::Response(response) | Reply::Records(response, _)) = &reply else {
        return reply;
    };
    let bytes = frame::response_payload_bytes(response, api_version);
    match limits::check_response_bytes(bytes, limit, key) {
        Ok(()) => reply,
        Err(refusal) => refusal,
    }
}

async fn dispatch(broker: &Arc<Broker>, request: Request, client: &Client<'_>) -> Started {
    match request {
        Request::ApiVersions(request) => api_versions::handle(&request).into(),
        Request::Metadata(request) => metadata::handle(broker, request).into(),
        Request::CreateTopics(request) => {
            create_topics::handle(broker.clone(), request).await.into()
        }
        Request::DeleteTopics(request) => {
            delete_topics::handle(broker.clone(), request).await.into()
        }
        Request::CreatePartitions(request) => create_partitions::handle(broker.clone(), request)
            .await
            .into(),
        Request::Produce(request) => produce::handle(broker, &request),
        Request::Fetch(request) => {
            let broker = broker.clone();
            let watches = client.fetch_watches.clone();
            Started::Waiting(Box::pin(async move {
                fetch::handle(&broker, request, watches).await
            }))
        }
        Request::ListOffsets(request) => list_offsets::handle(broker, request).into(),
        Request::DescribeTopics(request) => describe_topics::handle(broker, request).into(),
        Request::AlterTopicConfigs(request) => alter_topic_configs::handle(broker.clone(), request)
            .await
            .into(),
        Request::FindCoordinator(request) => find_coordinator::handle(broker.clone(), request)
            .await
            .into(),
        Request::ConsumerGroupHeartbeat(request) => {
            consumer_group_heartbeat::handle(broker, request, client).into()
        }
        Request::OffsetCommit(request) => offset_commit::handle(broker, request),
        Request::OffsetFetch(request) => offset_fetch::handle(broker, &request).into(),
        Request::ListGroups(request) => list_groups::handle(broker, &request).into(),
        Request::DescribeGroups(request) => describe_groups::handle(broker, request).into(),
        Request::DeleteGroups(request) => delete_groups::handle(broker, request).into(),
        Request::InitProducerId(request) => init_producer_id::handle(broker.clone(), request)
            .await
            .into(),
        Request::DescribeCluster(_) => describe_cluster::handle(broker.clone()).await.into(),
        Request::ElectLeaders(request) => {
            elect_leaders::handle(broker.clone(), request).await.into()
        }
        Request::AlterPartitionReassignments(request) => {
            alter_partition_reassignments::handle(broker.clone(), request)
                .await
                .into()
        }
        Request::ReplicaFetch(request) if client.origin == Origin::Cluster => {
            let broker = broker.clone();
            Started::Waiting(Box::pin(async move {
                replica_fetch::handle(&broker, request).await
            }))
        }
        Request::ReplicaFetch(_) => Reply::Error(
            ErrorCode::UnknownApiKey,
            "ReplicaFetch is served on the cluster listener only".to_owned(),
        )
        .into(),
        other => Reply::Error(
            ErrorCode::UnknownApiKey,
            format!("API {:?} has no handler", other.api_key()),
        )
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::{ListGroupsResponse, ListedGroup};

    use super::*;

    fn groups(count: usize) -> Reply {
        let group = ListedGroup {
            group_id: "g".repeat(200),
            state: "stable".into(),
            member_count: 1,
        };
        ListGroupsResponse {
            groups: vec![group; count],
        }
        .into()
    }

    #[test]
    fn a_reply_over_its_limit_becomes_limit_exceeded() {
        let Reply::Response(response) = groups(100) else {
            unreachable!("a response")
        };
        let bytes = frame::response_payload_bytes(&response, 0);
        assert!(matches!(
            within(groups(100), 0, bytes, "frame_bytes_max"),
            Reply::Response(_)
        ));
        let Reply::Error(code, message) = within(groups(100), 0, bytes - 1, "frame_bytes_max")
        else {
            panic!("not refused")
        };
        assert_eq!(code, ErrorCode::LimitExceeded);
        assert_eq!(
            message,
            format!(
                "the response would be {bytes} bytes; frame_bytes_max is {}",
                bytes - 1
            )
        );
        assert!(matches!(within(Reply::Nothing, 0, 0, "x"), Reply::Nothing));
        let error = Reply::Error(ErrorCode::InvalidRequest, "why".repeat(100));
        assert!(matches!(
            within(error, 0, 0, "x"),
            Reply::Error(ErrorCode::InvalidRequest, _)
        ));
    }
}
