//! Limits that a client and a broker both check, defined once here so the two cannot
//! drift apart, and tied to each other with `const` assertions.

/// Longest group id, and longest static instance id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 255;

/// Longest topic name, in bytes: a partition's directory is named `<topic>-<partition>`,
/// and this leaves room for a partition index below 100 000 in a 255-byte file name.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Longest file name Linux file systems allow (`NAME_MAX`).
const FILE_NAME_BYTES_MAX: usize = 255;
const _: () = assert!(TOPIC_NAME_BYTES_MAX + "-99999".len() <= FILE_NAME_BYTES_MAX);

/// Topic names starting with this are reserved for the broker's internal logs, such as
/// `__consumer_offsets`.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// The largest `frame_bytes_max` either side can set: a frame's length prefix is a `u32`.
pub const FRAME_BYTES_MAX_LIMIT: usize = u32::MAX as usize;

/// The broker's default `frame_bytes_max`: the largest request frame it reads.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;

/// The client's default `frame_bytes_max`, for the frames it sends and reads. A fetch
/// response carries up to the broker's `fetch_response_bytes_max` of batches plus its own
/// fields, so the client's limit sits well above that, not at the broker's request limit.
pub const CLIENT_FRAME_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// The broker's default `fetch_response_bytes_max`: batch bytes in one fetch response.
pub const FETCH_RESPONSE_BYTES_MAX_DEFAULT: usize = 16 << 20;

/// The default largest batch: a topic's `max_message_bytes` on the broker, and the
/// producer's `batch_bytes_max`, so that a default producer's batches fit a default topic.
pub const MESSAGE_BYTES_MAX_DEFAULT: u32 = 1 << 20;

const _: () = assert!(FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_LIMIT);
const _: () = assert!(CLIENT_FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_LIMIT);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX_DEFAULT < CLIENT_FRAME_BYTES_MAX_DEFAULT);
/// Memory a decoded request may take beyond its frame (array elements, copied strings),
/// whatever the frame's size. A request within a broker's default limits takes far less:
/// 10 000 partition entries of at most 64 bytes each, or 1000 names of at most 273.
pub const REQUEST_DECODED_BYTES_MIN: usize = 4 << 20;

/// Memory a decoded request may take beyond its frame, per byte of its body, once that is
/// more than [`REQUEST_DECODED_BYTES_MIN`]. A string or a partition entry with its batches
/// takes about as many bytes in memory as on the wire; only entries with nothing in them
/// (a 1-byte topic name, a partition with no batches) take many times more, and only an
/// attack sends millions of them: a 16 MiB Metadata request naming topic "a" 5.6 million
/// times would take some 300 MB once decoded.
pub const REQUEST_DECODED_BYTES_PER_BODY_BYTE: usize = 2;

/// The memory budget of decoding a request body of `body_bytes`; see
/// [`REQUEST_DECODED_BYTES_MIN`] and [`REQUEST_DECODED_BYTES_PER_BODY_BYTE`]. A request
/// over it is refused (`LimitExceeded`) before the array that would pass it is allocated.
pub const fn request_decoded_bytes_max(body_bytes: usize) -> usize {
    let scaled = body_bytes.saturating_mul(REQUEST_DECODED_BYTES_PER_BODY_BYTE);
    if scaled > REQUEST_DECODED_BYTES_MIN {
        scaled
    } else {
        REQUEST_DECODED_BYTES_MIN
    }
}

/// Room a frame keeps beside its largest batch for the rest of a produce request: the
/// broker refuses a `max_message_bytes` closer than this to its `frame_bytes_max`.
pub const PRODUCE_OVERHEAD_BYTES_MAX: usize = 1024;

/// Whether a batch of `max_message_bytes` still fits a produce request in a frame of
/// `frame_bytes_max`, with [`PRODUCE_OVERHEAD_BYTES_MAX`] to spare.
pub const fn message_fits_frame(max_message_bytes: u32, frame_bytes_max: usize) -> bool {
    (max_message_bytes as usize).saturating_add(PRODUCE_OVERHEAD_BYTES_MAX) <= frame_bytes_max
}

// The broker's defaults must pass its own check.
const _: () = assert!(message_fits_frame(
    MESSAGE_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MAX_DEFAULT
));

/// Why a topic name is refused. The messages are the ones the broker sends back with
/// `InvalidTopic`; they quote the name through [`shown`](crate::shown), so a refused name
/// of 65 KB costs its message no more than a short one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty, too long, a byte outside `[A-Za-z0-9._-]`, or `.` or `..`: a name that
    /// cannot be a directory name.
    #[error(
        "invalid topic name '{shown}': use 1 to {max} characters from [A-Za-z0-9._-], not '.' or '..'",
        shown = crate::shown(.name),
        max = TOPIC_NAME_BYTES_MAX
    )]
    Invalid {
        /// The refused name.
        name: String,
    },
    /// Starts with [`INTERNAL_TOPIC_PREFIX`].
    #[error(
        "invalid topic name '{shown}': names starting with '{prefix}' are reserved for the broker's internal logs",
        shown = crate::shown(.name),
        prefix = INTERNAL_TOPIC_PREFIX
    )]
    Reserved {
        /// The refused name.
        name: String,
    },
}

/// Checks a topic name: 1 to [`TOPIC_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`, not
/// `.` or `..`, and not starting with [`INTERNAL_TOPIC_PREFIX`].
///
/// # Errors
/// [`TopicNameError`] saying which rule the name breaks.
pub fn check_topic_name(name: &str) -> Result<(), TopicNameError> {
    let valid_bytes = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    if name.is_empty()
        || name.len() > TOPIC_NAME_BYTES_MAX
        || !valid_bytes
        || name == "."
        || name == ".."
    {
        return Err(TopicNameError::Invalid {
            name: name.to_owned(),
        });
    }
    if name.starts_with(INTERNAL_TOPIC_PREFIX) {
        return Err(TopicNameError::Reserved {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The form two topic names share when they collide: ASCII lowercase, with `.` as `_`.
/// Names that differ only in case are one directory on a case-insensitive file system,
/// and names that differ only in `.` versus `_` are one metric name (Kafka refuses the
/// latter for that reason), so a broker refuses a topic whose key an existing topic has.
pub fn topic_collision_key(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'.' => '_',
            byte => char::from(byte.to_ascii_lowercase()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn topic_names_follow_the_rules() {
        let longest = "t".repeat(TOPIC_NAME_BYTES_MAX);
        for name in ["orders", "a.b_c-D9", "...", longest.as_str()] {
            assert_eq!(check_topic_name(name), Ok(()), "{name}");
        }
        let too_long = "t".repeat(TOPIC_NAME_BYTES_MAX + 1);
        for name in [
            "",
            ".",
            "..",
            "bad/name",
            "caf\u{e9}",
            "a b",
            too_long.as_str(),
        ] {
            assert!(
                matches!(check_topic_name(name), Err(TopicNameError::Invalid { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            check_topic_name("__consumer_offsets"),
            Err(TopicNameError::Reserved { .. })
        ));
    }

    #[test]
    fn a_refused_name_is_quoted_cut_short() {
        let huge = "t".repeat(65_534);
        let message = check_topic_name(&huge).unwrap_err().to_string();
        let quoted = format!("'{}…'", "t".repeat(crate::SHOWN_BYTES_MAX));
        assert!(message.contains(&quoted), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn names_differing_in_case_or_dot_versus_underscore_collide() {
        assert_eq!(topic_collision_key("Orders"), topic_collision_key("orders"));
        assert_eq!(topic_collision_key("a.b"), topic_collision_key("a_b"));
        assert_eq!(topic_collision_key("A.b_C"), topic_collision_key("a_B.c"));
        assert_ne!(topic_collision_key("a-b"), topic_collision_key("a_b"));
        assert_ne!(topic_collision_key("ab"), topic_collision_key("a_b"));
    }

    #[test]
    fn error_code_messages_state_these_limits() {
        let group = format!("1 to {GROUP_ID_BYTES_MAX} bytes");
        assert!(ErrorCode::InvalidGroupId.message().contains(&group));
        let topic = format!("1 to {TOPIC_NAME_BYTES_MAX} characters from [A-Za-z0-9._-]");
        assert!(ErrorCode::InvalidTopic.message().contains(&topic));
        let prefix = format!("not starting with '{INTERNAL_TOPIC_PREFIX}'");
        assert!(ErrorCode::InvalidTopic.message().contains(&prefix));
    }
}
