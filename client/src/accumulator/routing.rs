//! Routing: which partition of its topic a record goes to. An explicit partition, else
//! the key's (Kafka's murmur2), else the topic's sticky partition, which moves on when
//! its batch seals. A topic's partition count is kept with its queues, valid for the
//! metadata generation it was looked up at.

use std::collections::BTreeMap;

use super::{Accumulator, PartitionQueue};
use crate::partitioner::partition_for_key;
use crate::record::ProducerRecord;

/// How [`Accumulator::append`] knows the topic's partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartitionCount {
    /// The count kept with the topic's queues, if it was looked up at this metadata
    /// generation.
    Kept { generation: u64 },
    /// Just looked up at `generation`: used, and kept for the next records.
    Fresh { count: u32, generation: u64 },
}

/// [`Accumulator::append`] has no partition count for the record's topic from
/// the current metadata, or the record's explicit partition is beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unrouted;

/// One topic's partition queues, its sticky partition and its partition count.
#[derive(Debug, Default)]
pub(super) struct TopicQueues {
    pub(super) queues: BTreeMap<u32, PartitionQueue>,
    /// The sticky partition for keyless records and the count it was chosen from.
    sticky: Option<(u32, u32)>,
    /// The topic's partition count and the metadata generation it was looked up at.
    partition_count: Option<(u32, u64)>,
}

impl TopicQueues {
    fn sticky_partition(&mut self, partition_count: u32) -> u32 {
        assert!(partition_count > 0);
        let (partition, count) = self.sticky.get_or_insert((0, partition_count));
        if *count != partition_count || *partition >= partition_count {
            (*partition, *count) = (*partition % partition_count, partition_count);
        }
        *partition
    }

    /// Moves the sticky partition on when its batch is sealed.
    pub(super) fn on_sealed(&mut self, sealed: u32) {
        if let Some((partition, count)) = &mut self.sticky
            && *partition == sealed
        {
            *partition = (*partition + 1) % *count;
        }
    }

    /// The partition `record` goes to, with the topic's partition count from
    /// `partition_count`, kept for the next records when fresh.
    ///
    /// # Errors
    /// [`Unrouted`] if the count is kept from another metadata generation (or none is),
    /// or if the record's explicit partition is beyond it.
    pub(super) fn route(
        &mut self,
        record: &ProducerRecord,
        partition_count: PartitionCount,
    ) -> Result<u32, Unrouted> {
        let count = match partition_count {
            PartitionCount::Fresh { count, generation } => {
                self.partition_count = Some((count, generation));
                count
            }
            PartitionCount::Kept { generation } => match self.partition_count {
                Some((count, kept_at)) if kept_at == generation => count,
                _ => return Err(Unrouted),
            },
        };
        if record.partition.is_some_and(|partition| partition >= count) {
            return Err(Unrouted);
        }
        Ok(match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => self.sticky_partition(count),
        })
    }
}

impl Accumulator {
    /// Moves the sticky partition of `topic` on when its batch is sealed.
    pub(super) fn on_sealed(&mut self, topic: &str, sealed: u32) {
        if let Some(topic) = self.topics.get_mut(topic) {
            topic.on_sealed(sealed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::accumulator::tests::record;
    use crate::record::TopicPartition;

    #[test]
    fn sticky_partition_moves_on_when_its_batch_seals() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(150, 1 << 20, Duration::from_secs(60), None);
        let mut partitions = Vec::new();
        for _ in 0..12 {
            let (_, delivery) = accumulator
                .append(
                    &record("0123456789012345678901234567890123456789"),
                    PartitionCount::Fresh {
                        count: 3,
                        generation: 0,
                    },
                    true,
                    10,
                    now,
                )
                .unwrap();
            partitions.push(delivery.unwrap().partition());
        }
        // Several records in a row share a partition, and all partitions get used.
        assert!(partitions.windows(2).any(|pair| pair[0] == pair[1]));
        for partition in 0..3 {
            assert!(partitions.contains(&partition), "{partitions:?}");
        }
    }

    #[test]
    fn a_kept_partition_count_routes_records_until_the_metadata_changes() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, Duration::from_secs(60), None);
        let kept = |generation| PartitionCount::Kept { generation };
        let keyed = record("v").key("user-7");
        // Nothing kept for the topic yet, and nothing kept of it after the refusal.
        assert_eq!(
            accumulator.append(&keyed, kept(4), true, 10, now).err(),
            Some(Unrouted)
        );
        assert!(accumulator.topics.is_empty());
        let fresh = PartitionCount::Fresh {
            count: 12,
            generation: 4,
        };
        let (_, first) = accumulator.append(&keyed, fresh, true, 10, now).unwrap();
        let (_, second) = accumulator.append(&keyed, kept(4), true, 10, now).unwrap();
        let expected = partition_for_key(b"user-7", 12);
        assert_eq!(first.unwrap().partition(), expected);
        assert_eq!(second.unwrap().partition(), expected);
        // The metadata changed since: the count must be looked up again.
        assert_eq!(
            accumulator.append(&keyed, kept(5), true, 10, now).err(),
            Some(Unrouted)
        );
        // An explicit partition beyond the count is refused, fresh or kept.
        let beyond = record("v").partition(12);
        assert_eq!(
            accumulator.append(&beyond, fresh, true, 10, now).err(),
            Some(Unrouted)
        );
        assert_eq!(
            accumulator.append(&beyond, kept(4), true, 10, now).err(),
            Some(Unrouted)
        );
        // Refused records were not appended: two records in one batch.
        accumulator.seal_all();
        let ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].0, TopicPartition::new("t", expected));
        assert_eq!(ready[0].1.iter().map(|batch| batch.records).sum::<u32>(), 2);
    }
}
