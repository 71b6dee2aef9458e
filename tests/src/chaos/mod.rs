//! `strata-chaos`: a fault-injection harness with a Jepsen-style checker. A run starts
//! its own brokers, drives a workload through a proxy it controls, injects faults on a
//! seeded schedule, drains every partition after healing, and checks the history.
//!
//! A run has one broker, or (`--brokers 3`) a cluster of three with a replicated
//! topic, proxies on the links between brokers, and faults aimed at a role (`--target`:
//! a partition's leader or follower, the controller) looked up when each fault comes.
//!
//! # Layout
//! - [`history`]: what a run did and saw, and the thread-safe recorder of it.
//! - [`checker`]: the invariants over a history (pure, unit-tested on hand-made ones).
//! - [`proxy`]: the TCP proxy every client connection goes through (cut, heal, delay).
//! - [`node`]: one broker process (start, `kill -9`, pause, resume).
//! - [`cluster`]: the brokers of a run, each behind its proxy, and the links between
//!   them.
//! - [`roles`]: who leads which partition, and who is the controller, at a fault's time.
//! - [`nemesis`]: the faults, and the driver that plays a [`schedule`] of them.
//! - `faults`: the power-loss and disk-full nemeses, over [`crate::power_loss`] and
//!   [`crate::disk_full`].
//! - `links`: the cluster's nemeses on the links between brokers (cut off, silenced,
//!   slow).
//! - `sequences`: the multi-step faults (last replica standing, divergent tails, rolling
//!   restart).
//! - [`workload`]: producers, the consumer group and the final drain.
//! - [`scenario`]: named scenarios, and a run from start to [`report`].

pub mod checker;
pub mod cluster;
mod error;
mod faults;
pub mod history;
mod links;
pub mod nemesis;
pub mod node;
pub mod proxy;
pub mod report;
pub mod roles;
pub mod scenario;
pub mod schedule;
mod sequences;
pub mod workload;

pub use error::ChaosError;
