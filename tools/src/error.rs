//! The CLI's error type. Each variant's message is written for the person at the
//! terminal: what failed, about which topic, and what to do when that is not obvious.

use strata_client::Error as ClientError;
use strata_client::protocol::ErrorCode;

/// Everything a command can fail with; `main` prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The topic named on the command line does not exist.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// `topic create` of a name that is taken.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// A partition index the topic lacks.
    #[error("topic '{topic}' has {partition_count} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partition_count: u32,
    },
    /// The broker rejected a request about a topic: its own explanation when it gave
    /// one (it names the topic), else the code's, with the code's name for searching.
    #[error("{detail} ({})", .code.name())]
    Rejected {
        /// The broker's code.
        code: ErrorCode,
        /// What the broker said.
        detail: String,
    },
    /// Any other client error; its own message names the broker or limit involved.
    #[error(transparent)]
    Client(ClientError),
    /// A stdin line longer than the largest record the topic takes.
    #[error(
        "line {line} of stdin is longer than {bytes_max} bytes, the most a record of topic \
         '{topic}' can hold (its max_message_bytes is {max_message_bytes})"
    )]
    LineTooLong {
        /// The line number, from 1.
        line: u64,
        /// The limit.
        bytes_max: usize,
        /// The topic.
        topic: String,
        /// The topic's batch limit, which the line limit follows.
        max_message_bytes: u64,
    },
    /// Reading stdin failed.
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    /// Writing stdout failed for a reason other than the reader closing it.
    #[error("cannot write stdout: {0}")]
    Stdout(std::io::Error),
    /// The reader of stdout closed it; the command stops quietly.
    #[error("stdout was closed")]
    StdoutClosed,
    /// Records failed to be delivered.
    #[error("{failed} of {total} records were not delivered; first error: {first}")]
    Undelivered {
        /// Records that failed.
        failed: u64,
        /// Records attempted.
        total: u64,
        /// The first failure, worded as a `CliError`.
        first: Box<CliError>,
    },
    /// `produce` gave up: a record failed for good, or waited too long.
    #[error(
        "{cause}; gave up: {delivered} of {read} lines delivered, the first not delivered \
         is line {line}: {preview}"
    )]
    GaveUp {
        /// Lines delivered.
        delivered: u64,
        /// Lines read from stdin.
        read: u64,
        /// The first line not delivered, from 1.
        line: u64,
        /// Its start, quoted.
        preview: String,
        /// Why, worded as a `CliError`.
        cause: Box<CliError>,
    },
    /// A produced line waited too long for its acknowledgement.
    #[error("no acknowledgement within {timeout_ms} ms (--delivery-timeout-ms)")]
    NotAcknowledged {
        /// The limit.
        timeout_ms: u64,
    },
    /// The topic was deleted while a command was using it.
    #[error("topic '{0}' was deleted")]
    TopicDeleted(String),
    /// A bench run that cannot start (its topic does not fit the arguments) or did not
    /// finish (records went missing); the message says which and what to do.
    #[error("{0}")]
    Bench(String),
    /// An unclean election asked for without `--yes`: what it puts at risk.
    #[error("{0}")]
    Unconfirmed(String),
    /// Elections that left partitions without the leader asked for (refused, not merely
    /// not needed).
    #[error(
        "{failed} of {total} partitions of topic '{topic}' got no leader; the table above \
         says why"
    )]
    NotElected {
        /// The topic.
        topic: String,
        /// Partitions whose election failed.
        failed: usize,
        /// Partitions asked for.
        total: usize,
    },
    /// `partition reassign` waited its time and the move had not finished.
    #[error(
        "partition {partition} of topic '{topic}' is still moving to {replicas} after \
         {timeout_ms} ms (its new replicas are catching up); the move goes on: run the \
         command again to wait, or `strata topic describe {topic}` to see its replicas"
    )]
    ReassignNotDone {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The target replicas, comma-separated.
        replicas: String,
        /// How long the command waited.
        timeout_ms: u64,
    },
    /// `consume --offset` outside the partition's log.
    #[error(
        "offset {offset} is out of range for partition {partition} of topic '{topic}'; \
         `strata topic describe {topic}` shows its log start offset and high watermark"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
    },
}

impl CliError {
    /// Words a client error about `topic`, turning broker codes into plain sentences.
    pub fn from_client(error: ClientError, topic: &str) -> Self {
        match error {
            ClientError::Broker {
                code: ErrorCode::UnknownTopicOrPartition,
                ..
            } => CliError::UnknownTopic(topic.to_owned()),
            ClientError::Broker {
                code: ErrorCode::TopicAlreadyExists,
                ..
            } => CliError::TopicExists(topic.to_owned()),
            ClientError::UnknownPartition {
                topic,
                partition,
                partition_count,
            } => CliError::UnknownPartition {
                topic,
                partition,
                partition_count,
            },
            ClientError::OffsetOutOfRange {
                topic,
                partition,
                offset,
            } => CliError::OffsetOutOfRange {
                topic,
                partition,
                offset,
            },
            ClientError::Broker { code, message } if message.is_empty() => CliError::Rejected {
                code,
                detail: format!("topic '{topic}': {}", code.message()),
            },
            ClientError::Broker { code, message } => CliError::Rejected {
                code,
                detail: message,
            },
            error => CliError::Client(error),
        }
    }

    /// Words a client error about consumer group `group`. The client's own messages for
    /// a missing group or one with live members already name the group.
    pub fn from_group(error: ClientError, group: &str) -> Self {
        match error {
            ClientError::Broker { code, message } if message.is_empty() => CliError::Rejected {
                code,
                detail: format!("group '{group}': {}", code.message()),
            },
            ClientError::Broker { code, message } => CliError::Rejected {
                code,
                detail: format!("group '{group}': {message}"),
            },
            error => CliError::Client(error),
        }
    }

    /// Maps a write to stdout: a closed pipe ends the command quietly.
    pub fn from_stdout(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::StdoutClosed
        } else {
            CliError::Stdout(error)
        }
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        CliError::Client(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_topic_is_named() {
        let error = ClientError::Broker {
            code: ErrorCode::UnknownTopicOrPartition,
            message: "topic orders does not exist".into(),
        };
        assert_eq!(
            CliError::from_client(error, "orders").to_string(),
            "topic 'orders' does not exist"
        );
    }

    #[test]
    fn other_broker_errors_keep_the_broker_explanation_and_code() {
        let error = ClientError::Broker {
            code: ErrorCode::InvalidPartitions,
            message: "topic 'orders' has 5 partitions; the new count 2 must be larger".into(),
        };
        assert_eq!(
            CliError::from_client(error, "orders").to_string(),
            "topic 'orders' has 5 partitions; the new count 2 must be larger (InvalidPartitions)"
        );
        let error = ClientError::Broker {
            code: ErrorCode::InvalidPartitions,
            message: String::new(),
        };
        let text = CliError::from_client(error, "orders").to_string();
        assert!(text.starts_with("topic 'orders': the partition count must be"));
        assert!(text.ends_with("(InvalidPartitions)"));
    }

    #[test]
    fn group_errors_name_the_group() {
        let busy = ClientError::NonEmptyGroup {
            group_id: "billing".into(),
        };
        assert_eq!(
            CliError::from_group(busy, "billing").to_string(),
            "group 'billing' has live members; stop its consumers first"
        );
        let error = ClientError::Broker {
            code: ErrorCode::InvalidGroupId,
            message: String::new(),
        };
        assert_eq!(
            CliError::from_group(error, "").to_string(),
            "group '': group ids are 1 to 255 bytes (InvalidGroupId)"
        );
    }

    #[test]
    fn connection_errors_pass_through() {
        let error = ClientError::Connect {
            address: "127.0.0.1:9400".into(),
            source: std::sync::Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert_eq!(
            CliError::from_client(error, "orders").to_string(),
            "cannot reach broker at 127.0.0.1:9400: connection refused"
        );
    }
}
