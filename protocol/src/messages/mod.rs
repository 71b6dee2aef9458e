//! Request and response bodies, one file per API.

pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod describe_cluster;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod replica_fetch;
pub mod topics;

pub use alter_partition_reassignments::*;
pub use api_versions::*;
pub use describe_cluster::*;
pub use elect_leaders::*;
pub use fetch::*;
pub use groups::*;
pub use init_producer_id::*;
pub use list_offsets::*;
pub use metadata::*;
pub use produce::*;
pub use replica_fetch::*;
pub use topics::*;
