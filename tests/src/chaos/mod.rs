//! `strata-chaos`: a fault-injection harness with a Jepsen-style checker. A run starts
//! its own brokers, drives a workload through a proxy it controls, injects faults on a
//! seeded schedule, drains every partition after healing, and checks the history.
//!
//! # Layout
//! - [`history`]: what a run did and saw, and the thread-safe recorder of it.
//! - [`checker`]: the invariants over a history (pure, unit-tested on hand-made ones).
//! - [`proxy`]: the TCP proxy every client connection goes through (cut, heal, delay).

pub mod checker;
pub mod history;
pub mod proxy;
