//! `strata-chaos`: a fault-injection harness with a Jepsen-style checker. A run starts
//! its own brokers, drives a workload through a proxy it controls, injects faults on a
//! seeded schedule, drains every partition after healing, and checks the history.
//!
//! Built for the cluster: brokers, proxies and nemeses are indexed by node, so
//! `--brokers N` and a `--target` choice of node slot in once replication lands; until
//! then a run has one broker.
//!
//! # Layout
//! - [`history`]: what a run did and saw, and the thread-safe recorder of it.
//! - [`checker`]: the invariants over a history (pure, unit-tested on hand-made ones).
//! - [`proxy`]: the TCP proxy every client connection goes through (cut, heal, delay).
//! - [`node`]: one broker process (start, `kill -9`, pause, resume).
//! - [`cluster`]: the brokers of a run, each behind its proxy.
//! - [`nemesis`]: the faults, and the driver that plays a [`schedule`] of them.
//! - `faults`: the power-loss and disk-full nemeses, over [`crate::power_loss`] and
//!   [`crate::disk_full`].
//! - [`workload`]: producers, the consumer group and the final drain.
//! - [`scenario`]: named scenarios, and a run from start to [`report`].

pub mod checker;
pub mod cluster;
mod error;
mod faults;
pub mod history;
pub mod nemesis;
pub mod node;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod workload;

pub use error::ChaosError;
