//! Why a broker did not start, and the exit code `strata-broker` reports for each kind,
//! so a supervisor can tell a mistake to fix from a condition to wait out.

use std::net::SocketAddr;

use strata_storage::StorageError;

use crate::cluster::ClusterStartError;
use crate::config::ConfigError;
use crate::data_dir::DataDirError;
use crate::group::open_error::GroupOpenError;
use crate::partition::PartitionError;
use crate::producer_ids::ProducerIdsOpenError;
use crate::topics::{AdminError, TopicsOpenError};

/// What kind of failure stopped the broker. The discriminant is `strata-broker`'s exit
/// code, documented in `docs/operations.md` and `strata-broker --help`; a code is never
/// reused for another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FailureKind {
    /// Anything not listed below, such as no thread or signal handler to be had.
    Other = 1,
    /// A flag, variable or file setting is unknown or invalid, or contradicts the data
    /// directory (`group_offsets_partitions`). Clap's usage errors use 2 as well.
    Configuration = 2,
    /// The data directory cannot be created or written, or another process holds its lock
    /// or a partition's.
    DataDir = 3,
    /// A listen address cannot be bound, mostly because another process has it.
    Address = 4,
    /// Data in the directory cannot be read back: a topic's metadata, a record of the
    /// offsets log that is not a group record, or the producer-id reservation. (A
    /// partition log with damaged data opens offline instead; the broker starts.)
    Recovery = 5,
}

/// Why [`Server::start`](crate::server::Server::start) failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen {purpose} on {address}: {source}")]
    Listen {
        /// `"for clients"`, `"for metrics"` or `"for the cluster"`.
        purpose: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The topics could not be opened.
    #[error(transparent)]
    Topics(#[from] TopicsOpenError),
    /// The group coordinator could not be opened.
    #[error(transparent)]
    Groups(#[from] GroupOpenError),
    /// The producer-id reservation could not be read.
    #[error(transparent)]
    ProducerIds(#[from] ProducerIdsOpenError),
    /// A thread, runtime or signal handler could not be set up.
    #[error("cannot start {what}: {source}")]
    Process {
        /// What could not start.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata quorum could not start: its log cannot be read back.
    #[error(transparent)]
    Cluster(#[from] ClusterStartError),
    /// The topics of an older single node's data directory could not be entered into
    /// the cluster metadata.
    #[error("cannot enter this data directory's topics into the cluster metadata: {}", .0.message)]
    Import(AdminError),
    /// Opening the data directory panicked.
    #[error("broker startup failed: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

impl StartupError {
    /// What kind of failure this is; `as u8` gives the exit code.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Config(_) | Self::Groups(GroupOpenError::PartitionCountChanged { .. }) => {
                FailureKind::Configuration
            }
            Self::DataDir(_)
            | Self::Topics(TopicsOpenError::CreateDir { .. } | TopicsOpenError::List { .. }) => {
                FailureKind::DataDir
            }
            Self::Topics(TopicsOpenError::Partition { source, .. })
            | Self::Groups(GroupOpenError::Open { source, .. })
                if is_locked(source) =>
            {
                FailureKind::DataDir
            }
            Self::Listen { .. } => FailureKind::Address,
            Self::Topics(_) | Self::Groups(_) | Self::ProducerIds(_) | Self::Cluster(_) => {
                FailureKind::Recovery
            }
            Self::Process { .. } | Self::Panicked(_) | Self::Import(_) => FailureKind::Other,
        }
    }
}

/// Whether another process (a tool reading a log offline, say) has a partition open.
fn is_locked(error: &PartitionError) -> bool {
    matches!(error, PartitionError::Storage(StorageError::Locked { .. }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn io_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::AddrInUse)
    }

    fn locked_partition() -> PartitionError {
        PartitionError::Storage(StorageError::Locked {
            dir: PathBuf::from("d/t-0"),
        })
    }

    #[test]
    fn each_failure_has_its_kind() {
        let cases = [
            (
                StartupError::Config(ConfigError::Zero { key: "node_id" }),
                FailureKind::Configuration,
            ),
            (
                StartupError::Groups(GroupOpenError::PartitionCountChanged {
                    data_dir: PathBuf::from("d"),
                    existing: 8,
                    configured: 4,
                }),
                FailureKind::Configuration,
            ),
            (
                StartupError::DataDir(DataDirError::Locked {
                    data_dir: PathBuf::from("d"),
                    path: PathBuf::from("d/.lock"),
                }),
                FailureKind::DataDir,
            ),
            (
                StartupError::Groups(GroupOpenError::Open {
                    partition: 0,
                    source: locked_partition(),
                }),
                FailureKind::DataDir,
            ),
            (
                StartupError::Topics(TopicsOpenError::Partition {
                    topic: "t".into(),
                    source: locked_partition(),
                }),
                FailureKind::DataDir,
            ),
            (
                StartupError::Listen {
                    purpose: "for clients",
                    address: SocketAddr::from(([127, 0, 0, 1], 9400)),
                    source: io_error(),
                },
                FailureKind::Address,
            ),
            (
                StartupError::Topics(TopicsOpenError::Corrupt {
                    path: PathBuf::from("d/topics/t.toml"),
                    source: toml::from_str::<toml::Table>("x = [").unwrap_err(),
                }),
                FailureKind::Recovery,
            ),
            (
                StartupError::ProducerIds(ProducerIdsOpenError::Damaged {
                    path: PathBuf::from("d/producer-ids"),
                }),
                FailureKind::Recovery,
            ),
            (
                StartupError::Process {
                    what: "the runtime",
                    source: io_error(),
                },
                FailureKind::Other,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }
}
