//! Criterion benchmarks for Strata live in `benches/`.
