//! Feeds arbitrary bytes through batch validation and the lazy record iterator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_protocol::batch::{self, Batches};

fuzz_target!(|data: &[u8]| {
    let _ = batch::validate(data, usize::MAX);
    for view in Batches::new(data).flatten() {
        for record in view.records().flatten() {
            record.headers.for_each(drop);
        }
    }
});
