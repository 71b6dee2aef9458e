pub mod controller;
pub mod metadata;
pub mod placement;
pub mod raft;
