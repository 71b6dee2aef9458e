//! The API table: every request and response type, their keys and supported versions,
//! and dispatch from a decoded header to a typed body.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::messages::*;
use crate::wire::{Reader, Sink, Versioned};

macro_rules! apis {
    ($( $(#[$doc:meta])* $name:ident = $key:literal, versions $min:literal ..= $max:literal,
        $request:ty, $response:ty; )*) => {
        /// An API's numeric key. Keys are never renumbered or reused; new APIs take the
        /// next free key.
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ApiKey {
            $( $(#[$doc])* $name = $key, )*
        }

        impl ApiKey {
            /// Every API, in key order.
            pub const ALL: &'static [ApiKey] = &[$( ApiKey::$name ),*];

            /// The API for a wire key.
            pub fn from_u16(key: u16) -> Option<Self> {
                match key {
                    $( $key => Some(ApiKey::$name), )*
                    _ => None,
                }
            }

            /// The API's name.
            pub fn name(self) -> &'static str {
                match self { $( ApiKey::$name => stringify!($name), )* }
            }

            /// Versions this build supports, inclusive.
            pub fn versions(self) -> std::ops::RangeInclusive<u16> {
                match self { $( ApiKey::$name => $min..=$max, )* }
            }
        }

        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Request {
            $( $(#[$doc])* $name($request), )*
        }

        impl Request {
            /// The request's API.
            pub fn api_key(&self) -> ApiKey {
                match self { $( Request::$name(_) => ApiKey::$name, )* }
            }

            /// Encodes the body (without header or frame) at `api_version`, which the
            /// caller has checked the API supports.
            pub fn encode_body<S: Sink + ?Sized>(&self, api_version: u16, out: &mut S) {
                match self {
                    $( Request::$name(body) => body.encode_versioned(api_version, out), )*
                }
            }

            /// Decodes a body of the given API and version. The whole of `body` must be
            /// consumed, and the decoded request may take at most
            /// [`request_memory_bytes_max`](crate::limits::request_decoded_bytes_max) of
            /// memory beyond it.
            ///
            /// # Errors
            /// [`DecodeError::UnknownApiKey`], [`DecodeError::UnsupportedVersion`],
            /// [`DecodeError::MemoryBudget`], or any error of a malformed body.
            pub fn decode(api_key: u16, api_version: u16, body: &Bytes) -> Result<Self, DecodeError> {
                let budget = crate::limits::request_decoded_bytes_max(body.len());
                let mut reader = Reader::with_memory_budget(body, budget);
                let request = match check_version(api_key, api_version)? {
                    $( ApiKey::$name => Request::$name(
                        <$request as Versioned>::decode_versioned(&mut reader, api_version)?,
                    ), )*
                };
                reader.finish()?;
                Ok(request)
            }
        }

        /// A decoded response body.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Response {
            $( $(#[$doc])* $name($response), )*
        }

        impl Response {
            /// The response's API.
            pub fn api_key(&self) -> ApiKey {
                match self { $( Response::$name(_) => ApiKey::$name, )* }
            }

            /// Encodes the body (without header or frame) at `api_version`: the
            /// version of the request it answers.
            pub fn encode_body<S: Sink + ?Sized>(&self, api_version: u16, out: &mut S) {
                match self {
                    $( Response::$name(body) => body.encode_versioned(api_version, out), )*
                }
            }

            /// Decodes a body of the given API and version. The whole of `body` must be
            /// consumed.
            ///
            /// # Errors
            /// As for [`Request::decode`].
            pub fn decode(api_key: u16, api_version: u16, body: &Bytes) -> Result<Self, DecodeError> {
                let mut reader = Reader::new(body);
                let response = match check_version(api_key, api_version)? {
                    $( ApiKey::$name => Response::$name(
                        <$response as Versioned>::decode_versioned(&mut reader, api_version)?,
                    ), )*
                };
                reader.finish()?;
                Ok(response)
            }
        }

        $(
            impl From<$request> for Request {
                fn from(body: $request) -> Self { Request::$name(body) }
            }

            impl From<$response> for Response {
                fn from(body: $response) -> Self { Response::$name(body) }
            }
        )*
    };
}

apis! {
    /// Version negotiation.
    ApiVersions = 0, versions 0..=0, ApiVersionsRequest, ApiVersionsResponse;
    /// Brokers, topics and partition leaders.
    Metadata = 1, versions 0..=0, MetadataRequest, MetadataResponse;
    /// Creates topics.
    CreateTopics = 2, versions 0..=0, CreateTopicsRequest, CreateTopicsResponse;
    /// Deletes topics.
    DeleteTopics = 3, versions 0..=0, DeleteTopicsRequest, DeleteTopicsResponse;
    /// Adds partitions to topics.
    CreatePartitions = 4, versions 0..=0, CreatePartitionsRequest, CreatePartitionsResponse;
    /// Appends record batches.
    Produce = 5, versions 0..=0, ProduceRequest, ProduceResponse;
    /// Reads record batches; version 1 adds leader epochs (KIP-320).
    Fetch = 6, versions 0..=1, FetchRequest, FetchResponse;
    /// Finds offsets by time, or the log's start and end.
    ListOffsets = 7, versions 0..=0, ListOffsetsRequest, ListOffsetsResponse;
    /// Describes topics with configs, offsets and sizes.
    DescribeTopics = 8, versions 0..=0, DescribeTopicsRequest, DescribeTopicsResponse;
    /// Changes configs of existing topics.
    AlterTopicConfigs = 9, versions 0..=0, AlterTopicConfigsRequest, AlterTopicConfigsResponse;
    /// Finds the broker that coordinates a consumer group.
    FindCoordinator = 10, versions 0..=0, FindCoordinatorRequest, FindCoordinatorResponse;
    /// Joins, stays in or leaves a consumer group and receives the member's assignment.
    ConsumerGroupHeartbeat = 11, versions 0..=0, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
    /// Commits a group's consumed offsets.
    OffsetCommit = 12, versions 0..=0, OffsetCommitRequest, OffsetCommitResponse;
    /// Reads a group's committed offsets.
    OffsetFetch = 13, versions 0..=0, OffsetFetchRequest, OffsetFetchResponse;
    /// Lists consumer groups.
    ListGroups = 14, versions 0..=0, ListGroupsRequest, ListGroupsResponse;
    /// Describes consumer groups: members, assignment, offsets and lag.
    DescribeGroups = 15, versions 0..=0, DescribeGroupsRequest, DescribeGroupsResponse;
    /// Deletes empty consumer groups and their offsets.
    DeleteGroups = 16, versions 0..=0, DeleteGroupsRequest, DeleteGroupsResponse;
    /// Gives an idempotent producer its id and epoch.
    InitProducerId = 17, versions 0..=0, InitProducerIdRequest, InitProducerIdResponse;
    /// The controller quorum, the brokers and partition counts, for cluster status.
    /// Boxed: it is the largest body, and every `Response` would otherwise carry its size.
    DescribeCluster = 18, versions 0..=0, DescribeClusterRequest, Box<DescribeClusterResponse>;
    /// A follower reads record batches from a partition's leader; served only on the
    /// cluster listener.
    ReplicaFetch = 19, versions 0..=0, ReplicaFetchRequest, ReplicaFetchResponse;
    /// Elects partition leaders: the preferred replica, or (unclean) any alive replica of
    /// a partition without a leader.
    ElectLeaders = 20, versions 0..=0, ElectLeadersRequest, ElectLeadersResponse;
    /// Moves partitions to other replicas (KIP-455).
    AlterPartitionReassignments = 21, versions 0..=0, AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
}

impl From<DescribeClusterResponse> for Response {
    fn from(body: DescribeClusterResponse) -> Self {
        Response::DescribeCluster(Box::new(body))
    }
}

fn check_version(api_key: u16, api_version: u16) -> Result<ApiKey, DecodeError> {
    let api = ApiKey::from_u16(api_key).ok_or(DecodeError::UnknownApiKey { api_key })?;
    if !api.versions().contains(&api_version) {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
        });
    }
    Ok(api)
}

/// The version ranges this build supports, as an ApiVersions response lists them.
pub fn supported_versions() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .iter()
        .map(|api| ApiVersionRange {
            api_key: *api as u16,
            min_version: *api.versions().start(),
            max_version: *api.versions().end(),
        })
        .collect()
}

/// The highest version of `api` that both sides support, given the peer's ranges.
pub fn negotiate(api: ApiKey, peer: &[ApiVersionRange]) -> Option<u16> {
    let ours = api.versions();
    let theirs = peer.iter().find(|range| range.api_key == api as u16)?;
    let high = (*ours.end()).min(theirs.max_version);
    let low = (*ours.start()).max(theirs.min_version);
    (low <= high).then_some(high)
}
