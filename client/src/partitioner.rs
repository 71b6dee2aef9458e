//! Choosing a partition for a record.
//!
//! - An explicit partition wins.
//! - A keyed record goes to `(murmur2(key) & 0x7fff_ffff) % partition_count`: the 32-bit
//!   MurmurHash2 with seed `0x9747_b28c`, exactly as Kafka's default partitioner, so a
//!   key lands on the same partition as it would with a Java, librdkafka (`murmur2`
//!   partitioner) or franz-go (`StickyKeyPartitioner`) producer. The mapping is stable
//!   across releases; changing it would be a breaking change.
//! - A keyless record goes to the topic's *sticky* partition, which moves to the next
//!   partition (round robin) whenever that partition's batch is sealed. Keyless records
//!   thus fill whole batches instead of spreading one record per partition.

/// Kafka's murmur2: MurmurHash2, 32 bit, seed `0x9747b28c`, little-endian blocks.
///
/// # Example
/// ```
/// use strata_client::partitioner::murmur2;
///
/// // A vector from Kafka's own test suite.
/// assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
/// ```
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Kafka hashes the Java int length; keys are far below 2^31 bytes.
    let mut h = SEED ^ (length as u32);
    let mut blocks = data.chunks_exact(4);
    for block in blocks.by_ref() {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(first) = tail.first() {
        h ^= u32::from(*first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of a keyed record: `(murmur2(key) & 0x7fff_ffff) % partition_count`.
///
/// # Panics
/// If `partition_count` is zero.
///
/// # Example
/// ```
/// use strata_client::partitioner::partition_for_key;
///
/// let partition = partition_for_key(b"user-42", 12);
/// assert!(partition < 12);
/// assert_eq!(partition, partition_for_key(b"user-42", 12));
/// ```
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors (Java signed ints).
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: [(&[u8], i32); 7] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input) as i32, expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn key_partitions_are_stable_and_positive() {
        // Pinned outputs: changing them would move every keyed record.
        assert_eq!(
            partition_for_key(b"foobar", 50),
            (-790_332_482i32 & 0x7fff_ffff) as u32 % 50
        );
        assert_eq!(
            partition_for_key(b"21", 7),
            (-973_932_308i32 & 0x7fff_ffff) as u32 % 7
        );
        for count in 1..64 {
            assert!(partition_for_key(b"any", count) < count);
        }
    }
}
