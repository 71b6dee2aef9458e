//! The group converges: whatever happened before, once every live member heartbeats and
//! confirms its revocations, the group becomes stable, balanced when subscriptions are
//! identical, and each consumer reads exactly what it owns.

use proptest::prelude::*;

use super::model::{Model, PARTITIONS_MAX, op};

proptest! {
    #[test]
    fn the_group_converges_once_members_heartbeat(
        ops in proptest::collection::vec(op(), 1..60),
        homogeneous in any::<bool>(),
        partitions in (1u32..PARTITIONS_MAX, 1u32..PARTITIONS_MAX),
    ) {
        let mut model = Model::new(homogeneous, partitions);
        for op in &ops {
            model.apply(op);
        }
        model.converge();
    }
}
