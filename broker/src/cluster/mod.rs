//! The cluster: the metadata quorum and what runs on it.

pub mod raft;
