//! What can stop a chaos run before it has a verdict. A violation is not an error: it is
//! the report's business.

use std::path::PathBuf;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A flag or scenario asked for something that does not exist or does not fit.
    #[error("{0}")]
    InvalidInput(String),
    /// A binary the run needs is not next to `strata-chaos`.
    #[error("{} is missing: run `cargo build --workspace --bins` (it is looked for next to strata-chaos)", .0.display())]
    MissingBinary(PathBuf),
    /// A broker did not start.
    #[error("broker did not start: {why}; its log is {}", .log.display())]
    BrokerStart {
        /// What went wrong.
        why: String,
        /// The broker's stderr.
        log: PathBuf,
    },
    /// An operating-system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The workload's client failed where it cannot go on (creating the topic, the drain).
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: strata_client::Error,
    },
    /// A step of the run took longer than its bound.
    #[error("{0} took longer than its bound")]
    TimedOut(&'static str),
}

impl ChaosError {
    /// An [`Io`](Self::Io) error saying `what` failed.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// A [`Client`](Self::Client) error saying `what` failed.
    pub fn client(what: impl Into<String>) -> impl FnOnce(strata_client::Error) -> Self {
        let what = what.into();
        move |source| Self::Client { what, source }
    }
}
