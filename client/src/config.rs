//! Configuration. Every limit is named `<noun>_max` with its unit last and has a default;
//! build a config with `..Default::default()` or the `new` constructors.

use std::time::Duration;

use strata_protocol::batch::IDEMPOTENT_BATCHES_IN_FLIGHT_MAX;
use strata_protocol::limits::{
    CLIENT_FRAME_BYTES_MAX_DEFAULT, FRAME_BYTES_MAX_DEFAULT, GROUP_ID_BYTES_MAX,
    MESSAGE_BYTES_MAX_DEFAULT,
};
use strata_protocol::messages::Acks;

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// The producer's default `request_bytes_max`.
const REQUEST_BYTES_MAX_DEFAULT: usize = 8 << 20;
// A default producer's requests fit in a default broker's frames.
const _: () = assert!(REQUEST_BYTES_MAX_DEFAULT < FRAME_BYTES_MAX_DEFAULT);

/// Settings shared by [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) and
/// [`Admin`](crate::Admin): where the cluster is and how to talk to it.
///
/// # Example
/// ```
/// use strata_client::ClientConfig;
///
/// let config = ClientConfig {
///     request_timeout_ms: 5_000,
///     ..ClientConfig::new("127.0.0.1:9400")
/// };
/// assert_eq!(config.bootstrap, vec!["127.0.0.1:9400".to_string()]);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses (`[v6-address]:port` for IPv6) tried in order until one
    /// answers; the metadata they return names the rest of the cluster.
    pub bootstrap: Vec<String>,
    /// Names this client in broker logs and metrics.
    pub client_id: String,
    /// How long a request may wait for its response before failing with
    /// [`Error::RequestTimedOut`] (a fetch adds its own long-poll wait to this).
    pub request_timeout_ms: u64,
    /// How long opening a TCP connection plus the ApiVersions handshake may take.
    pub connect_timeout_ms: u64,
    /// First wait before reconnecting to a broker that failed; doubles per consecutive
    /// failure, and every wait is jittered by ±20 %.
    pub reconnect_backoff_ms: u64,
    /// Ceiling of the reconnect backoff (before jitter), at most one hour.
    pub reconnect_backoff_ms_max: u64,
    /// Cached metadata is refreshed at least this often, and on leader errors.
    pub metadata_refresh_ms: u64,
    /// Largest frame sent or accepted, in bytes. Above the broker's fetch response
    /// limit, so a full fetch response always fits.
    pub frame_bytes_max: usize,
    /// Requests awaiting a response on one connection; further requests wait.
    pub in_flight_requests_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec!["127.0.0.1:9400".into()],
            client_id: "strata-client".into(),
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 50,
            reconnect_backoff_ms_max: 1_000,
            metadata_refresh_ms: 60_000,
            frame_bytes_max: CLIENT_FRAME_BYTES_MAX_DEFAULT,
            in_flight_requests_max: 64,
        }
    }
}

impl ClientConfig {
    /// Defaults with a comma-separated bootstrap list such as `"a:9400,b:9400"`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.bootstrap.is_empty() {
            return Err(Error::InvalidConfig("bootstrap is empty".into()));
        }
        for address in &self.bootstrap {
            check_bootstrap_address(address)?;
        }
        check_backoff(
            "reconnect_backoff_ms",
            self.reconnect_backoff_ms,
            self.reconnect_backoff_ms_max,
        )?;
        if self.in_flight_requests_max == 0 {
            return Err(Error::InvalidConfig(
                "in_flight_requests_max must be at least 1".into(),
            ));
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(Error::InvalidConfig("timeouts must be positive".into()));
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The policy of reconnects to a broker that failed.
    pub(crate) fn reconnect_backoff(&self) -> Backoff {
        Backoff::new(self.reconnect_backoff_ms, self.reconnect_backoff_ms_max)
    }
}

/// Checks that a bootstrap address is `host:port` (or `[v6-address]:port`) with a port
/// from 1 to 65535, so a mistyped address is reported as such rather than as a failed
/// connection. Whether the host resolves is learnt when connecting.
fn check_bootstrap_address(address: &str) -> Result<()> {
    let invalid = |problem: String| Error::InvalidBootstrap {
        address: address.to_owned(),
        problem,
    };
    let (host, port) = match address.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, rest)) => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(invalid(format!("has '{rest}' after the ']'"))),
            },
            None => return Err(invalid("lacks the ']' closing its IPv6 address".into())),
        },
        // A bare IPv6 address: its last colon does not start a port.
        None if address.matches(':').count() > 1 => (address, None),
        None => match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    if host.is_empty() {
        return Err(invalid("has no host".into()));
    }
    match port {
        None | Some("") => Err(invalid("has no port".into())),
        Some(port) if port.parse::<u16>().is_ok_and(|port| port > 0) => Ok(()),
        Some(port) => Err(invalid(format!(
            "has port '{port}', not a number from 1 to 65535"
        ))),
    }
}

/// Longest backoff ceiling: a client that waits longer between attempts than this is
/// more likely misconfigured than patient.
const BACKOFF_CEILING_MS: u64 = 3_600_000;

/// Checks a `<name>` / `<name>_max` backoff pair: `1 <= initial <= max <= 1 hour`.
fn check_backoff(name: &str, initial_ms: u64, max_ms: u64) -> Result<()> {
    if initial_ms == 0 || initial_ms > max_ms || max_ms > BACKOFF_CEILING_MS {
        return Err(Error::InvalidConfig(format!(
            "need 1 <= {name} ({initial_ms}) <= {name}_max ({max_ms}) <= {BACKOFF_CEILING_MS}"
        )));
    }
    Ok(())
}

/// What [`Producer::send`](crate::Producer::send) does when `buffer_bytes_max` bytes are
/// already buffered.
///
/// # Example
/// ```
/// use strata_client::{OnBufferFull, ProducerConfig};
///
/// // Shed load instead of slowing the caller down.
/// let config = ProducerConfig {
///     on_buffer_full: OnBufferFull::Error,
///     ..ProducerConfig::new("127.0.0.1:9400")
/// };
/// assert_eq!(config.on_buffer_full, OnBufferFull::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBufferFull {
    /// Wait for space, up to `buffer_wait_ms_max`, then fail with [`Error::BufferFull`].
    Wait,
    /// Fail at once with [`Error::BufferFull`].
    Error,
}

/// Producer settings.
///
/// # Example
/// ```
/// use strata_client::{Acks, ProducerConfig};
///
/// let config = ProducerConfig {
///     acks: Acks::All,
///     linger_ms: 10,
///     ..ProducerConfig::new("127.0.0.1:9400")
/// };
/// assert_eq!(config.batch_bytes_max, 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// When the broker acknowledges a write.
    pub acks: Acks,
    /// How long a partition's open batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sealed before it would grow past this many bytes (a single larger
    /// record gets a batch of its own, up to `record_bytes_max`).
    pub batch_bytes_max: usize,
    /// Largest single record, encoded.
    pub record_bytes_max: usize,
    /// Bytes of records buffered or in flight; beyond this `send` applies
    /// `on_buffer_full`.
    pub buffer_bytes_max: usize,
    /// Wait or fail when the buffer is full.
    pub on_buffer_full: OnBufferFull,
    /// Longest wait for buffer space with [`OnBufferFull::Wait`].
    pub buffer_wait_ms_max: u64,
    /// Attempts after the first for a batch that failed with a retriable error.
    pub retries_max: u32,
    /// First wait before retrying a batch; doubles per attempt, and every wait is
    /// jittered by ±20 %.
    pub retry_backoff_ms: u64,
    /// Ceiling of the retry backoff (before jitter), at most one hour.
    pub retry_backoff_ms_max: u64,
    /// Bytes of batches for one partition sent in one produce request.
    pub request_partition_bytes_max: usize,
    /// Bytes of batches in one produce request; partitions beyond it go in another
    /// request to the same broker. Keep it below the broker's `frame_bytes_max`.
    pub request_bytes_max: usize,
    /// How long the broker may wait for `acks = all`.
    pub produce_timeout_ms: u32,
    /// Whether the producer is idempotent (with `acks` other than `None`): it gets a
    /// producer id from the cluster and numbers its batches per partition, so a retry of a
    /// batch the leader already wrote is answered with the original offsets instead of
    /// being written twice, and several batches of one partition can be in flight without
    /// reordering. Without it a partition has one request in flight.
    pub idempotence: bool,
    /// Batches of one partition in flight at once with idempotence, 1 to 5 (the leader
    /// remembers a producer's last 5 batches per partition to recognise retries).
    pub partition_in_flight_batches_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            acks: Acks::Leader,
            linger_ms: 5,
            batch_bytes_max: MESSAGE_BYTES_MAX_DEFAULT as usize,
            // Leaves room for the batch header under the broker's 1 MiB
            // max_message_bytes default.
            record_bytes_max: 1_000_000,
            buffer_bytes_max: 32 << 20,
            on_buffer_full: OnBufferFull::Wait,
            buffer_wait_ms_max: 60_000,
            retries_max: 20,
            retry_backoff_ms: 100,
            retry_backoff_ms_max: 1_000,
            request_partition_bytes_max: 4 << 20,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            produce_timeout_ms: 30_000,
            idempotence: true,
            partition_in_flight_batches_max: IDEMPOTENT_BATCHES_IN_FLIGHT_MAX,
        }
    }
}

impl ProducerConfig {
    /// Whether the producer runs idempotent: asked for, and with acknowledgements to
    /// learn the outcome of each batch from.
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotence && self.acks != Acks::None
    }

    /// Defaults with a comma-separated bootstrap list.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.client.validate()?;
        check_backoff(
            "retry_backoff_ms",
            self.retry_backoff_ms,
            self.retry_backoff_ms_max,
        )?;
        if self.batch_bytes_max == 0 || self.record_bytes_max == 0 {
            return Err(Error::InvalidConfig(
                "batch_bytes_max and record_bytes_max must be positive".into(),
            ));
        }
        if self.record_bytes_max > self.buffer_bytes_max {
            return Err(Error::InvalidConfig(
                "record_bytes_max must not exceed buffer_bytes_max".into(),
            ));
        }
        if self.batch_bytes_max > self.request_partition_bytes_max
            || self.request_partition_bytes_max > self.request_bytes_max
            || self.request_bytes_max >= self.client.frame_bytes_max
        {
            return Err(Error::InvalidConfig(
                "need batch_bytes_max <= request_partition_bytes_max <= request_bytes_max < frame_bytes_max".into(),
            ));
        }
        if !(1..=IDEMPOTENT_BATCHES_IN_FLIGHT_MAX).contains(&self.partition_in_flight_batches_max) {
            return Err(Error::InvalidConfig(format!(
                "partition_in_flight_batches_max must be 1 to {IDEMPOTENT_BATCHES_IN_FLIGHT_MAX}"
            )));
        }
        if u32::try_from(self.buffer_bytes_max).is_err() {
            return Err(Error::InvalidConfig(
                "buffer_bytes_max must be below 4 GiB".into(),
            ));
        }
        Ok(())
    }

    /// The policy of retried batches and producer id requests.
    pub(crate) fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.retry_backoff_ms, self.retry_backoff_ms_max)
    }
}

/// Where a consumer starts when it has no position or its position left the log.
///
/// # Example
/// ```
/// use strata_client::{AutoOffsetReset, ConsumerConfig};
///
/// // Read everything retained, from the oldest record.
/// let config = ConsumerConfig {
///     auto_offset_reset: AutoOffsetReset::Earliest,
///     ..ConsumerConfig::new("127.0.0.1:9400")
/// };
/// assert_eq!(config.auto_offset_reset, AutoOffsetReset::Earliest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// Fail `poll` with [`Error::OffsetOutOfRange`] or [`Error::NoPosition`] until the
    /// application seeks.
    Error,
}

/// Consumer settings.
///
/// # Example
/// ```
/// use strata_client::{AutoOffsetReset, ConsumerConfig};
///
/// let config = ConsumerConfig {
///     auto_offset_reset: AutoOffsetReset::Earliest,
///     ..ConsumerConfig::new("127.0.0.1:9400")
/// };
/// assert_eq!(config.fetch_wait_ms_max, 500);
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// What to do without a valid position.
    pub auto_offset_reset: AutoOffsetReset,
    /// Longest time the broker holds a fetch waiting for `fetch_bytes_min`.
    pub fetch_wait_ms_max: u32,
    /// The broker answers a fetch once this many bytes are ready.
    pub fetch_bytes_min: u32,
    /// Bytes in one fetch response (at least one batch is always returned).
    pub fetch_bytes_max: u32,
    /// Bytes per partition in one fetch response.
    pub partition_fetch_bytes_max: u32,
    /// Fetched bytes buffered ahead of the application, answers still being decoded
    /// included; no new fetch starts above this.
    pub prefetch_bytes_max: usize,
    /// Records one `poll` returns.
    pub poll_records_max: usize,
    /// First wait before re-fetching a partition after a retriable error, and before
    /// retrying a failed heartbeat, commit or committed-offset lookup; doubles per
    /// consecutive failure, and every wait is jittered by ±20 %.
    pub retry_backoff_ms: u64,
    /// Ceiling of the retry backoff (before jitter), at most one hour.
    pub retry_backoff_ms_max: u64,
    /// A stable id of this consumer process for static group membership, the same
    /// across restarts: a restarted member with the same id takes its predecessor's
    /// partitions back without a rebalance, and [`Consumer::close`](crate::Consumer::close)
    /// leaves the group only temporarily (the broker keeps the partitions until the
    /// session times out). `None` (the default) makes a dynamic member.
    pub group_instance_id: Option<String>,
    /// Commit the positions of owned partitions every `auto_commit_interval_ms` from
    /// inside `poll`, before a revocation is confirmed, and on `close`. Default `true`.
    /// With `false` the application commits with
    /// [`Consumer::commit_sync`](crate::Consumer::commit_sync) and friends, and nothing
    /// is committed for it on revocation.
    pub enable_auto_commit: bool,
    /// How often auto-commit runs, in milliseconds. Default 5 000.
    pub auto_commit_interval_ms: u64,
    /// The group's assignor, `uniform` or `range`; `None` (the default) keeps the
    /// group's (`uniform` unless a member chose otherwise).
    pub group_assignor: Option<String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_wait_ms_max: 500,
            fetch_bytes_min: 1,
            fetch_bytes_max: 16 << 20,
            partition_fetch_bytes_max: 1 << 20,
            prefetch_bytes_max: 64 << 20,
            poll_records_max: 500,
            retry_backoff_ms: 100,
            retry_backoff_ms_max: 1_000,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            group_assignor: None,
        }
    }
}

impl ConsumerConfig {
    /// Defaults with a comma-separated bootstrap list.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.client.validate()?;
        check_backoff(
            "retry_backoff_ms",
            self.retry_backoff_ms,
            self.retry_backoff_ms_max,
        )?;
        if u64::from(self.fetch_bytes_max) >= self.client.frame_bytes_max as u64 {
            return Err(Error::InvalidConfig(
                "fetch_bytes_max must be below frame_bytes_max".into(),
            ));
        }
        if self.poll_records_max == 0 {
            return Err(Error::InvalidConfig(
                "poll_records_max must be at least 1".into(),
            ));
        }
        if self.auto_commit_interval_ms == 0 {
            return Err(Error::InvalidConfig(
                "auto_commit_interval_ms must be positive".into(),
            ));
        }
        if self
            .group_instance_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > GROUP_ID_BYTES_MAX)
        {
            return Err(Error::InvalidConfig(format!(
                "group_instance_id must be 1 to {GROUP_ID_BYTES_MAX} bytes"
            )));
        }
        Ok(())
    }

    /// The policy of retried fetches, heartbeats, commits and offset lookups.
    pub(crate) fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.retry_backoff_ms, self.retry_backoff_ms_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap_error(bootstrap: &str) -> String {
        let config = ClientConfig::new(bootstrap);
        config.validate().expect_err(bootstrap).to_string()
    }

    #[test]
    fn a_bootstrap_address_without_a_port_says_so() {
        assert_eq!(
            bootstrap_error("127.0.0.1"),
            "bootstrap address '127.0.0.1' has no port; use host:port"
        );
        assert_eq!(
            bootstrap_error("a:9400,localhost:"),
            "bootstrap address 'localhost:' has no port; use host:port"
        );
        assert_eq!(
            bootstrap_error("::1"),
            "bootstrap address '::1' has no port; use host:port"
        );
        assert_eq!(
            bootstrap_error("[::1]"),
            "bootstrap address '[::1]' has no port; use host:port"
        );
    }

    #[test]
    fn a_bootstrap_address_with_a_bad_port_or_no_host_says_which() {
        assert_eq!(
            bootstrap_error("localhost:http"),
            "bootstrap address 'localhost:http' has port 'http', not a number from 1 to 65535; use host:port"
        );
        assert!(bootstrap_error("localhost:0").contains("has port '0', not a number"));
        assert!(bootstrap_error("localhost:65536").contains("has port '65536'"));
        assert_eq!(
            bootstrap_error(":9400"),
            "bootstrap address ':9400' has no host; use host:port"
        );
        assert!(bootstrap_error("[::1:9400").contains("lacks the ']'"));
        assert!(bootstrap_error("[::1]9400").contains("has '9400' after the ']'"));
    }

    #[test]
    fn well_formed_bootstrap_addresses_pass() {
        let config = ClientConfig::new("127.0.0.1:9400, broker-2.example:1 ,[::1]:65535");
        assert_eq!(config.bootstrap.len(), 3);
        config.validate().expect("valid");
    }

    #[test]
    fn backoff_pairs_are_ordered_and_bounded() {
        let config = |initial, max| ConsumerConfig {
            retry_backoff_ms: initial,
            retry_backoff_ms_max: max,
            ..ConsumerConfig::default()
        };
        config(100, 100).validate().expect("equal is fine");
        for (initial, max) in [(0, 100), (200, 100), (100, BACKOFF_CEILING_MS + 1)] {
            let error = config(initial, max).validate().expect_err("refused");
            assert!(error.to_string().contains("retry_backoff_ms"), "{error}");
        }
        let client = ClientConfig {
            reconnect_backoff_ms: 5_000,
            ..ClientConfig::default()
        };
        assert_eq!(
            client.validate().expect_err("above its max").to_string(),
            "invalid configuration: need 1 <= reconnect_backoff_ms (5000) <= \
             reconnect_backoff_ms_max (1000) <= 3600000"
        );
    }
}
