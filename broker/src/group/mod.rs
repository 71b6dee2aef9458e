//! Consumer groups: the coordinator's pure state machine ([`engine`]), the assignors
//! ([`assignor`]), and the records that persist group state in the internal offsets log
//! ([`records`]), the log they live in ([`store`]), and the coordinator as the broker runs
//! it ([`service`]).

pub mod assignor;
pub mod engine;
pub mod open_error;
pub mod records;
pub mod service;
pub mod store;
