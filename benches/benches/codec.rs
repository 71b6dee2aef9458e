//! Record batch encode and decode throughput for 100 B and 1 KiB records.
//!
//! Each iteration builds (or validates and iterates) one batch of about 64 KiB; `encode_1mib`
//! builds one of about 1 MiB, the producer's default `batch_bytes_max`, which no longer
//! fits the CPU's faster caches once built. Reported twice: as bytes/s and as records/s.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use strata_protocol::batch::{self, BatchBuilder, BatchView};

const BATCH_BYTES_TARGET: usize = 64 * 1024;
const LARGE_BATCH_BYTES_TARGET: usize = 1024 * 1024;
const RECORD_SIZES: [usize; 2] = [100, 1024];

fn build(value: &[u8], records: usize) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(records * (value.len() + 32));
    for index in 0..records {
        let key = (index as u64).to_be_bytes();
        builder.push(
            1_700_000_000_000 + index as i64,
            Some(&key),
            Some(value),
            &[],
        );
    }
    builder.finish()
}

fn decode(batch: &[u8]) -> usize {
    let header = batch::validate(batch, usize::MAX).expect("valid batch");
    let mut total = 0;
    for record in (BatchView {
        header,
        bytes: batch,
    })
    .records()
    {
        let record = record.expect("valid record");
        total += record.value.map_or(0, <[u8]>::len) + record.key.map_or(0, <[u8]>::len);
    }
    total
}

fn codec(c: &mut Criterion) {
    for (unit, by_records) in [("bytes", false), ("records", true)] {
        let mut group = c.benchmark_group(format!("batch_codec_{unit}"));
        for size in RECORD_SIZES {
            let value = vec![0xA5u8; size];
            let records = BATCH_BYTES_TARGET / size;
            let encoded = build(&value, records);
            group.throughput(if by_records {
                Throughput::Elements(records as u64)
            } else {
                Throughput::Bytes(encoded.len() as u64)
            });
            group.bench_with_input(BenchmarkId::new("encode", size), &value, |b, value| {
                b.iter(|| build(black_box(value), records));
            });
            group.bench_with_input(BenchmarkId::new("decode", size), &encoded, |b, encoded| {
                b.iter(|| decode(black_box(encoded)));
            });
            let large_records = LARGE_BATCH_BYTES_TARGET / size;
            let large_len = build(&value, large_records).len();
            group.throughput(if by_records {
                Throughput::Elements(large_records as u64)
            } else {
                Throughput::Bytes(large_len as u64)
            });
            group.bench_with_input(BenchmarkId::new("encode_1mib", size), &value, |b, value| {
                b.iter(|| build(black_box(value), large_records));
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = codec
}
criterion_main!(benches);
