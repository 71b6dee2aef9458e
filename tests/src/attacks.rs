//! Raw request frames that try to make a broker spend memory out of proportion to what
//! it read: one name repeated in millions of partition entries, one topic named many
//! times, more group ids than any client sends. Each builder writes the frame's bytes
//! directly, so the test that sends it never holds the millions of entries as values.
//!
//! The fan-out frames fill a frame of `frame_bytes_max` payload bytes (the broker's
//! default is 16 MiB), the largest frame a broker reads.

use bytes::{BufMut, BytesMut};
use strata_protocol::ApiKey;
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::wire::Wire;

/// The client id the attack frames carry.
pub const CLIENT_ID: &str = "attack";

/// A 65 KB name: near the longest string the protocol carries, and longer than any topic
/// or group id the broker accepts.
pub const LONG_NAME_BYTES: usize = 65_000;

/// A request frame for `api` with correlation id `correlation_id`, whose body `body`
/// writes.
fn request(api: ApiKey, correlation_id: u32, body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::write_frame(&mut out, |out| {
        RequestHeader {
            api_key: api as u16,
            api_version: 0,
            correlation_id,
            client_id: CLIENT_ID.into(),
        }
        .encode(out);
        body(out);
    });
    out.to_vec()
}

/// Bytes of a request header with [`CLIENT_ID`].
fn header_bytes() -> usize {
    2 + 2 + 4 + 2 + CLIENT_ID.len()
}

fn put_string(out: &mut BytesMut, text: &str) {
    text.to_owned().encode(out);
}

/// The shape of one API's request with a single topic of many partition entries: the
/// fields before the topic array, each partition entry (all `entry_bytes` long), and the
/// fields after the array.
struct FanOut<'a> {
    api: ApiKey,
    before: &'a [u8],
    entry_bytes: usize,
    entry: fn(u32, &mut BytesMut),
    after: &'a [u8],
}

impl FanOut<'_> {
    /// The frame: one topic named by `name_bytes` bytes of `x`, with as many partition
    /// entries, indexes 0, 1, 2, ..., as fit a payload of `frame_bytes_max`.
    fn frame(&self, frame_bytes_max: usize, name_bytes: usize, correlation_id: u32) -> Vec<u8> {
        // The topic count, the name and the partition count.
        let topic_bytes = 4 + 2 + name_bytes + 4;
        let fixed = header_bytes() + self.before.len() + topic_bytes + self.after.len();
        let count = (frame_bytes_max - fixed) / self.entry_bytes;
        let name = "x".repeat(name_bytes);
        let frame = request(self.api, correlation_id, |out| {
            out.put_slice(self.before);
            1u32.encode(out);
            put_string(out, &name);
            u32::try_from(count)
                .expect("a count a frame can hold")
                .encode(out);
            for partition in 0..count as u32 {
                (self.entry)(partition, out);
            }
            out.put_slice(self.after);
        });
        assert!(frame.len() - frame::LENGTH_PREFIX_BYTES <= frame_bytes_max);
        frame
    }
}

/// A Produce (`acks = leader`) naming one unknown topic of `name_bytes` bytes with as
/// many partition entries, each with no batches, as fit a `frame_bytes_max` payload:
/// about two million for a 65 KB name in 16 MiB. An error message quoting the name for
/// each entry would come to about 137 GB.
pub fn produce_fan_out(frame_bytes_max: usize, name_bytes: usize, correlation_id: u32) -> Vec<u8> {
    let mut before = BytesMut::new();
    1u8.encode(&mut before); // acks = leader
    10_000u32.encode(&mut before); // timeout_ms
    FanOut {
        api: ApiKey::Produce,
        before: &before,
        entry_bytes: 4 + 4,
        entry: |partition, out| {
            partition.encode(out);
            0u32.encode(out); // no record bytes
        },
        after: &[],
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// A Fetch naming one topic of `name_bytes` bytes with as many partition entries as fit
/// a `frame_bytes_max` payload.
pub fn fetch_fan_out(frame_bytes_max: usize, name_bytes: usize, correlation_id: u32) -> Vec<u8> {
    let mut before = BytesMut::new();
    0u32.encode(&mut before); // max_wait_ms
    0u32.encode(&mut before); // min_bytes
    (1u32 << 20).encode(&mut before); // max_bytes
    FanOut {
        api: ApiKey::Fetch,
        before: &before,
        entry_bytes: 4 + 8 + 4,
        entry: |partition, out| {
            partition.encode(out);
            0u64.encode(out); // fetch_offset
            1024u32.encode(out); // partition_max_bytes
        },
        after: &[],
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// A ListOffsets naming one topic of `name_bytes` bytes with as many partition entries
/// as fit a `frame_bytes_max` payload.
pub fn list_offsets_fan_out(
    frame_bytes_max: usize,
    name_bytes: usize,
    correlation_id: u32,
) -> Vec<u8> {
    FanOut {
        api: ApiKey::ListOffsets,
        before: &[],
        entry_bytes: 4 + 8,
        entry: |partition, out| {
            partition.encode(out);
            (-1i64).encode(out); // the latest offset
        },
        after: &[],
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// An administrator's OffsetCommit for group `group_id` naming one topic of `name_bytes`
/// bytes with as many partition entries as fit a `frame_bytes_max` payload: over a
/// million for a 65 KB name in 16 MiB. Copying the name into each entry would come to
/// about 78 GB.
pub fn offset_commit_fan_out(
    frame_bytes_max: usize,
    group_id: &str,
    name_bytes: usize,
    correlation_id: u32,
) -> Vec<u8> {
    let mut before = BytesMut::new();
    put_string(&mut before, group_id);
    put_string(&mut before, ""); // an administrator's commit: no member id
    (-1i32).encode(&mut before); // ADMIN_COMMIT_EPOCH
    FanOut {
        api: ApiKey::OffsetCommit,
        before: &before,
        entry_bytes: 4 + 8 + 2,
        entry: |partition, out| {
            partition.encode(out);
            0u64.encode(out); // offset
            u16::MAX.encode(out); // no metadata
        },
        after: &[],
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// An OffsetFetch for group `group_id` naming one topic of `name_bytes` bytes with as
/// many partitions as fit a `frame_bytes_max` payload.
pub fn offset_fetch_fan_out(
    frame_bytes_max: usize,
    group_id: &str,
    name_bytes: usize,
    correlation_id: u32,
) -> Vec<u8> {
    let mut before = BytesMut::new();
    put_string(&mut before, group_id);
    FanOut {
        api: ApiKey::OffsetFetch,
        before: &before,
        entry_bytes: 4,
        entry: |partition, out| partition.encode(out),
        after: &[],
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// A heartbeat joining group `group_id` that claims to own as many partitions of one
/// topic of `name_bytes` bytes as fit a `frame_bytes_max` payload.
pub fn heartbeat_fan_out(
    frame_bytes_max: usize,
    group_id: &str,
    name_bytes: usize,
    correlation_id: u32,
) -> Vec<u8> {
    let mut before = BytesMut::new();
    put_string(&mut before, group_id);
    put_string(&mut before, ""); // the coordinator chooses the member id
    0i32.encode(&mut before); // JOIN_EPOCH
    u16::MAX.encode(&mut before); // no instance id
    1u32.encode(&mut before); // subscribed to one topic
    put_string(&mut before, "t");
    u16::MAX.encode(&mut before); // the group's assignor
    let after = 0i32.to_be_bytes(); // leaving_epoch
    FanOut {
        api: ApiKey::ConsumerGroupHeartbeat,
        before: &before,
        entry_bytes: 4,
        entry: |partition, out| partition.encode(out),
        after: &after,
    }
    .frame(frame_bytes_max, name_bytes, correlation_id)
}

/// A request for `api` whose body is one array of `count` copies of `name` (a Metadata
/// or DescribeTopics request naming one topic `count` times; a DescribeGroups or
/// DeleteGroups request naming one group; a ListGroups filter naming one state).
///
/// # Panics
/// If `api` is not one of those, whose bodies are such an array and nothing else.
pub fn names_repeated(api: ApiKey, name: &str, count: usize, correlation_id: u32) -> Vec<u8> {
    assert!(
        matches!(
            api,
            ApiKey::Metadata
                | ApiKey::DescribeTopics
                | ApiKey::DescribeGroups
                | ApiKey::DeleteGroups
                | ApiKey::ListGroups
        ),
        "{api:?} does not take a bare array of names"
    );
    request(api, correlation_id, |out| {
        u32::try_from(count)
            .expect("a count a frame can hold")
            .encode(out);
        for _ in 0..count {
            put_string(out, name);
        }
    })
}

/// The payload bytes of `frame`, as a broker's `frame_bytes_max` counts them.
pub fn payload_bytes(frame: &[u8]) -> usize {
    frame.len() - frame::LENGTH_PREFIX_BYTES
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use strata_protocol::frame::decode_request;
    use strata_protocol::{Request, messages::*};

    use super::*;

    fn decoded(frame: &[u8]) -> Request {
        let payload = Bytes::copy_from_slice(&frame[frame::LENGTH_PREFIX_BYTES..]);
        decode_request(&payload).expect("a well-formed request").1
    }

    #[test]
    fn the_fan_out_frames_decode_and_fill_their_frame() {
        const FRAME: usize = 4096;
        let produce = produce_fan_out(FRAME, 100, 1);
        assert!(payload_bytes(&produce) > FRAME - 8);
        let Request::Produce(request) = decoded(&produce) else {
            panic!("not a produce")
        };
        assert_eq!(request.topics[0].name.len(), 100);
        // The header takes 16 bytes, acks and timeout 5, the topic 110: 495 entries fit.
        assert_eq!(request.topics[0].partitions.len(), 495);
        let frames = [
            fetch_fan_out(FRAME, 10, 2),
            list_offsets_fan_out(FRAME, 10, 3),
            offset_commit_fan_out(FRAME, "g", 10, 4),
            offset_fetch_fan_out(FRAME, "g", 10, 5),
            heartbeat_fan_out(FRAME, "g", 10, 6),
        ];
        for frame in &frames {
            let partitions = match decoded(frame) {
                Request::Fetch(request) => request.topics[0].partitions.len(),
                Request::ListOffsets(request) => request.topics[0].partitions.len(),
                Request::OffsetCommit(request) => request.topics[0].partitions.len(),
                Request::OffsetFetch(request) => request.topics.unwrap()[0].partitions.len(),
                Request::ConsumerGroupHeartbeat(request) => {
                    request.owned_partitions.unwrap()[0].partitions.len()
                }
                other => panic!("unexpected {other:?}"),
            };
            assert!(partitions > 200, "{partitions}");
            assert!(payload_bytes(frame) <= FRAME);
        }
    }

    #[test]
    fn repeated_names_decode() {
        let frame = names_repeated(ApiKey::DescribeTopics, "wide", 3, 9);
        assert_eq!(
            decoded(&frame),
            Request::DescribeTopics(DescribeTopicsRequest {
                names: Some(vec!["wide".into(); 3])
            })
        );
    }
}
