//! `memcpy`: this machine's memory copy bandwidth, one of the ceilings of issue 8's
//! baseline (`benches/run-baseline.sh`). Copies a buffer much larger than the caches
//! into another, a few times, and prints the best pass as JSON:
//! `{"bytes":..,"passes":..,"megabytes_per_second":..}` (MB = 10^6 bytes).
//!
//! One thread, like one broker connection copying payload bytes. Both buffers are
//! written before timing so page faults are not measured.
//!
//! Usage: `memcpy [BUFFER_MIB] [PASSES]` (defaults 256 and 5).

use std::hint::black_box;
use std::time::Instant;

/// Default buffer size: far above any L3 cache of the machines we run on.
const BUFFER_MIB_DEFAULT: usize = 256;
const PASSES_DEFAULT: u32 = 5;
/// Bounds on the arguments, so a typo cannot ask for all memory or hours of copying.
const BUFFER_MIB_MAX: usize = 16 << 10;
const PASSES_MAX: u32 = 1_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let buffer_mib = parse(args.next(), BUFFER_MIB_DEFAULT).clamp(1, BUFFER_MIB_MAX);
    let passes = parse(args.next(), PASSES_DEFAULT).clamp(1, PASSES_MAX);
    let bytes = buffer_mib << 20;
    let source: Vec<u8> = (0..bytes).map(|index| index as u8).collect();
    let mut destination = vec![1_u8; bytes];
    let mut best_seconds = f64::MAX;
    for _ in 0..passes {
        let start = Instant::now();
        destination.copy_from_slice(black_box(&source));
        black_box(&mut destination);
        best_seconds = best_seconds.min(start.elapsed().as_secs_f64());
    }
    assert_eq!(destination.get(bytes - 1), source.get(bytes - 1));
    let megabytes_per_second = bytes as f64 / 1e6 / best_seconds.max(f64::MIN_POSITIVE);
    println!(
        "{{\"bytes\":{bytes},\"passes\":{passes},\"megabytes_per_second\":{megabytes_per_second:.1}}}"
    );
}

fn parse<T: std::str::FromStr>(argument: Option<String>, default: T) -> T {
    match argument {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("memcpy: expected a number, got '{text}'");
            std::process::exit(2);
        }),
    }
}
