//! Records that persist consumer-group state in the internal offsets log.
//!
//! The coordinator ([`super::engine::Coordinator`]) describes every change to persisted
//! state as a [`Record`]; replaying all records in log order rebuilds that state. Each
//! record is a key (which group, member or partition it is about) and a value (its full
//! new state), or no value (a tombstone: the thing was removed). Keys are designed for a
//! compacted log: the latest record per key is the whole truth for that key.
//!
//! # Layout
//!
//! Fields use the protocol's wire primitives (`strata_protocol::wire`): big-endian
//! integers, strings as a `u16` length and UTF-8 bytes (`0xFFFF` = null), sets and lists as
//! a `u32` count followed by the elements. A partition (`tp`) is a topic string followed
//! by a `u32` partition index. Sets are written in ascending order.
//!
//! ```text
//! key   = record_type: u16, then
//!         1 offset:  group: string, topic: string, partition: u32
//!         2 group:   group: string
//!         3 member:  group: string, member_id: string
//!
//! value = version: u16 (0), then
//!         offset:  offset: u64, metadata: nullable string, commit_ms: i64
//!         group:   epoch: i32, assignment_epoch: i32, assignor: u8 (0 uniform, 1 range),
//!                  partition_counts: u32 count x (topic: string, partitions: u32)
//!         member:  instance_id: nullable string, client_id: string, client_host: string,
//!                  subscribed_topics: u32 count x string,
//!                  member_epoch: i32, previous_epoch: i32,
//!                  assigned: u32 count x tp, pending_revocation: u32 count x tp,
//!                  target: u32 count x tp, left_static: u8 (0 or 1)
//!
//! no value = tombstone: the offset, the group (with everything in it) or the member
//!            was removed
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use strata_protocol::DecodeError;
pub use strata_protocol::TopicPartition;
use strata_protocol::wire::{Reader, Sink, Wire};

use super::assignor::Assignor;

/// Record type of an [`Record::Offset`] key.
pub const RECORD_TYPE_OFFSET: u16 = 1;
/// Record type of a [`Record::Group`] key.
pub const RECORD_TYPE_GROUP: u16 = 2;
/// Record type of a [`Record::Member`] key.
pub const RECORD_TYPE_MEMBER: u16 = 3;
/// The only value version written and read today.
pub const RECORD_VALUE_VERSION: u16 = 0;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group consumes.
    pub offset: u64,
    /// Free text the member committed with it.
    pub metadata: Option<String>,
    /// When it was committed, in milliseconds since the Unix epoch (broker clock).
    pub commit_ms: i64,
}

/// A group's own state, without its members and offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Bumped whenever membership, subscriptions, subscribed partition counts or the
    /// assignor change.
    pub epoch: i32,
    /// The group epoch the members' targets were computed for.
    pub assignment_epoch: i32,
    /// How targets are computed.
    pub assignor: Assignor,
    /// Partition count of every subscribed topic that exists, as of `epoch`.
    pub partition_counts: BTreeMap<String, u32>,
}

impl Default for GroupValue {
    fn default() -> Self {
        Self {
            epoch: 0,
            assignment_epoch: 0,
            assignor: Assignor::Uniform,
            partition_counts: BTreeMap::new(),
        }
    }
}

/// A member's full persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The client id from the member's request header.
    pub client_id: String,
    /// The address the member connects from.
    pub client_host: String,
    /// The topics it subscribes to.
    pub subscribed_topics: BTreeSet<String>,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The epoch before the last change, still accepted from a member whose heartbeat
    /// response was lost.
    pub previous_epoch: i32,
    /// Partitions the member owns, including those pending revocation. A partition is in
    /// at most one member's `assigned` set.
    pub assigned: BTreeSet<TopicPartition>,
    /// Owned partitions the member was asked to give up and has not yet confirmed.
    pub pending_revocation: BTreeSet<TopicPartition>,
    /// What the current target assignment gives the member.
    pub target: BTreeSet<TopicPartition>,
    /// The static member left for a restart and keeps its partitions until its session
    /// times out or its successor (same instance id) joins.
    pub left_static: bool,
}

/// One change to persisted group state; see the [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A committed offset, or its removal.
    Offset {
        /// The group id.
        group: String,
        /// The partition.
        tp: TopicPartition,
        /// The committed offset; `None` removes it.
        value: Option<OffsetValue>,
    },
    /// A group's state, or the group's removal with all its members and offsets.
    Group {
        /// The group id.
        group: String,
        /// The group's state; `None` deletes the group.
        value: Option<GroupValue>,
    },
    /// A member's state, or its removal.
    Member {
        /// The group id.
        group: String,
        /// The member id.
        member_id: String,
        /// The member's state; `None` removes the member.
        value: Option<MemberValue>,
    },
}

impl Record {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            Record::Offset { group, .. }
            | Record::Group { group, .. }
            | Record::Member { group, .. } => group,
        }
    }

    /// The record's key bytes.
    pub fn key(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        match self {
            Record::Offset { group, tp, .. } => {
                RECORD_TYPE_OFFSET.encode(&mut out);
                group.encode(&mut out);
                tp.encode(&mut out);
            }
            Record::Group { group, .. } => {
                RECORD_TYPE_GROUP.encode(&mut out);
                group.encode(&mut out);
            }
            Record::Member {
                group, member_id, ..
            } => {
                RECORD_TYPE_MEMBER.encode(&mut out);
                group.encode(&mut out);
                member_id.encode(&mut out);
            }
        }
        out.into()
    }

    /// The record's value bytes, or `None` for a tombstone.
    pub fn value(&self) -> Option<Vec<u8>> {
        let mut out = BytesMut::new();
        RECORD_VALUE_VERSION.encode(&mut out);
        match self {
            Record::Offset { value, .. } => encode_offset(value.as_ref()?, &mut out),
            Record::Group { value, .. } => encode_group(value.as_ref()?, &mut out),
            Record::Member { value, .. } => encode_member(value.as_ref()?, &mut out),
        }
        Some(out.into())
    }

    /// Decodes a record from its key and value bytes. Never panics, whatever the input.
    ///
    /// # Errors
    /// A [`DecodeError`] if either part is short, malformed, of an unknown record type or
    /// value version, or has bytes left over.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Record, DecodeError> {
        let key = Bytes::copy_from_slice(key);
        let mut key = Reader::new(&key);
        let value = value.map(Bytes::copy_from_slice);
        let mut value = value.as_ref().map(Reader::new);
        if let Some(value) = value.as_mut() {
            let offset = value.position();
            let version = u16::decode(value)?;
            if version != RECORD_VALUE_VERSION {
                return Err(DecodeError::InvalidValue {
                    field: "record value version",
                    offset,
                    value: version.into(),
                });
            }
        }
        let record = match u16::decode(&mut key)? {
            RECORD_TYPE_OFFSET => Record::Offset {
                group: String::decode(&mut key)?,
                tp: TopicPartition::decode(&mut key)?,
                value: value.as_mut().map(decode_offset).transpose()?,
            },
            RECORD_TYPE_GROUP => Record::Group {
                group: String::decode(&mut key)?,
                value: value.as_mut().map(decode_group).transpose()?,
            },
            RECORD_TYPE_MEMBER => Record::Member {
                group: String::decode(&mut key)?,
                member_id: String::decode(&mut key)?,
                value: value.as_mut().map(decode_member).transpose()?,
            },
            record_type => {
                return Err(DecodeError::InvalidValue {
                    field: "record type",
                    offset: 0,
                    value: record_type.into(),
                });
            }
        };
        key.finish()?;
        if let Some(value) = value {
            value.finish()?;
        }
        Ok(record)
    }
}

/// Writes a `u32` element count.
///
/// # Panics
/// If there are `u32::MAX` elements or more; group state is far smaller.
fn encode_count<S: Sink + ?Sized>(count: usize, out: &mut S) {
    u32::try_from(count)
        .ok()
        .filter(|count| *count != u32::MAX)
        .expect("fewer than u32::MAX elements")
        .encode(out);
}

fn encode_set<'a, T: Wire + 'a, S: Sink + ?Sized>(
    elements: impl ExactSizeIterator<Item = &'a T>,
    out: &mut S,
) {
    encode_count(elements.len(), out);
    for element in elements {
        element.encode(out);
    }
}

fn decode_set<T: Wire + Ord>(reader: &mut Reader<'_>) -> Result<BTreeSet<T>, DecodeError> {
    Ok(Vec::<T>::decode(reader)?.into_iter().collect())
}

fn decode_bool(reader: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    let offset = reader.position();
    match u8::decode(reader)? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::InvalidValue {
            field,
            offset,
            value: value.into(),
        }),
    }
}

fn encode_offset<S: Sink + ?Sized>(value: &OffsetValue, out: &mut S) {
    value.offset.encode(out);
    value.metadata.encode(out);
    value.commit_ms.encode(out);
}

fn decode_offset(reader: &mut Reader<'_>) -> Result<OffsetValue, DecodeError> {
    Ok(OffsetValue {
        offset: u64::decode(reader)?,
        metadata: Option::<String>::decode(reader)?,
        commit_ms: i64::decode(reader)?,
    })
}

/// A topic's partition count inside a [`GroupValue`].
struct PartitionCount {
    topic: String,
    count: u32,
}

impl Wire for PartitionCount {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        self.topic.encode(out);
        self.count.encode(out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: String::decode(reader)?,
            count: u32::decode(reader)?,
        })
    }
}

fn encode_group<S: Sink + ?Sized>(value: &GroupValue, out: &mut S) {
    value.epoch.encode(out);
    value.assignment_epoch.encode(out);
    value.assignor.code().encode(out);
    encode_count(value.partition_counts.len(), out);
    for (topic, count) in &value.partition_counts {
        topic.encode(out);
        count.encode(out);
    }
}

fn decode_group(reader: &mut Reader<'_>) -> Result<GroupValue, DecodeError> {
    let epoch = i32::decode(reader)?;
    let assignment_epoch = i32::decode(reader)?;
    let offset = reader.position();
    let code = u8::decode(reader)?;
    let assignor = Assignor::from_code(code).ok_or(DecodeError::InvalidValue {
        field: "assignor",
        offset,
        value: code.into(),
    })?;
    let partition_counts = Vec::<PartitionCount>::decode(reader)?
        .into_iter()
        .map(|entry| (entry.topic, entry.count))
        .collect();
    Ok(GroupValue {
        epoch,
        assignment_epoch,
        assignor,
        partition_counts,
    })
}

fn encode_member<S: Sink + ?Sized>(value: &MemberValue, out: &mut S) {
    value.instance_id.encode(out);
    value.client_id.encode(out);
    value.client_host.encode(out);
    encode_set(value.subscribed_topics.iter(), out);
    value.member_epoch.encode(out);
    value.previous_epoch.encode(out);
    encode_set(value.assigned.iter(), out);
    encode_set(value.pending_revocation.iter(), out);
    encode_set(value.target.iter(), out);
    u8::from(value.left_static).encode(out);
}

fn decode_member(reader: &mut Reader<'_>) -> Result<MemberValue, DecodeError> {
    Ok(MemberValue {
        instance_id: Option::<String>::decode(reader)?,
        client_id: String::decode(reader)?,
        client_host: String::decode(reader)?,
        subscribed_topics: decode_set(reader)?,
        member_epoch: i32::decode(reader)?,
        previous_epoch: i32::decode(reader)?,
        assigned: decode_set(reader)?,
        pending_revocation: decode_set(reader)?,
        target: decode_set(reader)?,
        left_static: decode_bool(reader, "left_static")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, btree_set, vec};
    use proptest::option;
    use proptest::prelude::*;

    fn tp() -> impl Strategy<Value = TopicPartition> {
        ("[a-c]{1,3}", 0u32..8).prop_map(|(topic, partition)| TopicPartition { topic, partition })
    }

    fn member_value() -> impl Strategy<Value = MemberValue> {
        (
            (
                option::of("[a-z]{0,4}"),
                "[a-z]{0,4}",
                "[0-9.]{0,8}",
                btree_set("[a-c]{1,3}", 0..4),
            ),
            (any::<i32>(), any::<i32>()),
            (
                btree_set(tp(), 0..5),
                btree_set(tp(), 0..3),
                btree_set(tp(), 0..5),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (instance_id, client_id, client_host, subscribed_topics),
                    (member_epoch, previous_epoch),
                    (assigned, pending_revocation, target, left_static),
                )| MemberValue {
                    instance_id,
                    client_id,
                    client_host,
                    subscribed_topics,
                    member_epoch,
                    previous_epoch,
                    assigned,
                    pending_revocation,
                    target,
                    left_static,
                },
            )
    }

    fn record() -> impl Strategy<Value = Record> {
        let offset = (
            "\\PC{0,6}",
            tp(),
            option::of((any::<u64>(), option::of("\\PC{0,6}"), any::<i64>())),
        )
            .prop_map(|(group, tp, value)| Record::Offset {
                group,
                tp,
                value: value.map(|(offset, metadata, commit_ms)| OffsetValue {
                    offset,
                    metadata,
                    commit_ms,
                }),
            });
        let group = (
            "\\PC{0,6}",
            option::of((
                any::<i32>(),
                any::<i32>(),
                any::<bool>(),
                btree_map("[a-c]{1,3}", any::<u32>(), 0..4),
            )),
        )
            .prop_map(|(group, value)| Record::Group {
                group,
                value: value.map(
                    |(epoch, assignment_epoch, range, partition_counts)| GroupValue {
                        epoch,
                        assignment_epoch,
                        assignor: if range {
                            Assignor::Range
                        } else {
                            Assignor::Uniform
                        },
                        partition_counts,
                    },
                ),
            });
        let member = ("\\PC{0,6}", "[a-z0-9-]{0,8}", option::of(member_value())).prop_map(
            |(group, member_id, value)| Record::Member {
                group,
                member_id,
                value,
            },
        );
        prop_oneof![offset, group, member]
    }

    proptest! {
        #[test]
        fn records_round_trip(record in record()) {
            let key = record.key();
            let value = record.value();
            let decoded = Record::decode(&key, value.as_deref()).expect("decodes");
            prop_assert_eq!(decoded, record);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            key in vec(any::<u8>(), 0..64),
            value in option::of(vec(any::<u8>(), 0..128)),
        ) {
            let _ = Record::decode(&key, value.as_deref());
        }

        #[test]
        fn flipped_byte_never_panics(record in record(), index in any::<usize>(), flip in 1u8..=255) {
            let key = record.key();
            let mut value = record.value().unwrap_or_default();
            if !value.is_empty() {
                let index = index % value.len();
                value[index] ^= flip;
            }
            let _ = Record::decode(&key, Some(&value));
            let mut key = key;
            let index = index % key.len();
            key[index] ^= flip;
            let _ = Record::decode(&key, record.value().as_deref());
        }

        #[test]
        fn truncated_records_fail(record in record(), cut in any::<usize>()) {
            let key = record.key();
            let cut = cut % key.len();
            prop_assert!(Record::decode(&key[..cut], record.value().as_deref()).is_err());
            if let Some(value) = record.value() {
                let cut_value = cut % value.len();
                prop_assert!(Record::decode(&key, Some(&value[..cut_value])).is_err());
            }
        }
    }

    #[test]
    fn unknown_record_type_and_version_are_rejected() {
        let record = Record::Group {
            group: "g".into(),
            value: Some(GroupValue::default()),
        };
        let mut key = record.key();
        key[1] = 9;
        assert!(matches!(
            Record::decode(&key, None),
            Err(DecodeError::InvalidValue {
                field: "record type",
                ..
            })
        ));
        let mut value = record.value().expect("a value");
        value[1] = 1;
        assert!(matches!(
            Record::decode(&record.key(), Some(&value)),
            Err(DecodeError::InvalidValue {
                field: "record value version",
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let record = Record::Member {
            group: "g".into(),
            member_id: "m".into(),
            value: None,
        };
        let mut key = record.key();
        key.push(0);
        assert!(matches!(
            Record::decode(&key, None),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}
