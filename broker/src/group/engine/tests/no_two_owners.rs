//! No partition ever has two owners: after every operation, no partition is in two
//! members' `assigned` sets (the harness checks that on every call), and every live
//! consumer reads only partitions the coordinator has it own.

use proptest::prelude::*;

use super::model::{Model, PARTITIONS_MAX, op};

proptest! {
    #[test]
    fn members_never_share_a_partition(
        ops in proptest::collection::vec(op(), 1..60),
        homogeneous in any::<bool>(),
        partitions in (1u32..PARTITIONS_MAX, 1u32..PARTITIONS_MAX),
    ) {
        let mut model = Model::new(homogeneous, partitions);
        for op in &ops {
            model.apply(op);
            model.check();
        }
    }
}
