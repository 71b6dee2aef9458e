//! The Strata broker: networking, request handling, topics and partition logs.
//!
//! Brokers form a cluster around a Raft-replicated metadata log; a broker with no peers
//! is a one-node cluster of itself. Each partition has one replica until replication
//! lands; leader epochs and the high watermark are in place for it.
//!
//! # Layout
//! - [`process`]: `strata-broker` as a process: flags, logs, signals, exit codes.
//! - [`cluster`]: the cluster's metadata quorum.
//! - [`server`]: listeners, connection limit, background jobs, graceful shutdown.
//! - [`startup`]: why a start failed, and the exit code for each kind of failure.
//! - [`data_dir`]: the data directory's lock and cluster id.
//! - [`cluster`]: the metadata quorum, registration and fencing, placement, and the
//!   local logs kept in step with the metadata.
//! - [`connection`]: one connection's pipelined read-dispatch-write loop.
//! - `handler`: one file per API, from decoded request to response.
//! - `send`: writes responses, large record chunks by `sendfile` from segment files.
//! - [`group`]: consumer group coordination and committed offsets.
//! - [`topics`]: this broker's copies of its topics, and the checks of admin changes.
//! - [`partition`]: a partition's log, high watermark and waiters, over `strata-storage`.
//! - [`config`]: every setting and limit, and how flags, environment and file combine.
//! - [`metrics`]: Prometheus metrics and the `/metrics` endpoint.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod data_dir;
pub mod group;
mod handler;
pub mod metrics;
pub mod partition;
pub mod process;
pub mod producer_ids;
pub mod replication;
mod send;
pub mod server;
pub mod startup;
pub mod topics;
