//! Async Rust client for Strata: Producer, Consumer and Admin.
