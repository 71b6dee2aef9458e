//! Arbitrary bytes as the body of an AlterPartitionReassignments request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_protocol::ApiKey;

fuzz_target!(|body: &[u8]| strata_protocol_fuzz::request(ApiKey::AlterPartitionReassignments, body));
