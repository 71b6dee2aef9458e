//! Consumer groups: the coordinator's pure state machine ([`engine`]), the assignors
//! ([`assignor`]), and the records that persist group state in the internal offsets log
//! ([`records`]), the log they live in ([`store`]), the coordinator as the broker runs
//! it ([`service`]), and the groups it serves following the offsets log's leadership
//! ([`leadership`]).

pub mod assignor;
pub mod engine;
pub mod leadership;
pub mod open_error;
pub mod records;
pub mod service;
pub mod store;
