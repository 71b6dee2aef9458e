//! The cluster's settings: the listener for inter-broker and controller traffic, the
//! controller voters (`peers`), the broker session and Raft timings, and the default
//! replication factor; how `peers` is written; and the checks that they fit together
//! and with the client listener.
//!
//! `peers` lists every controller voter as `ID@HOST:PORT`. Each broker of a cluster is
//! one of its voters for now, so the list names this broker too, and that entry is the
//! address the other voters dial: this broker's advertised cluster address. Its port must
//! be `cluster_listen`'s (and its host, when both are IP addresses and `cluster_listen`
//! is not a wildcard, its IP), so a mistyped list fails here rather than as an election
//! that never ends. An empty list is a one-node cluster of this broker alone.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serialize, Serializer};

use super::{Config, ConfigError};

/// The default `cluster_listen`: next to the client (9400) and metrics (9401) ports.
pub const CLUSTER_LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9402);

/// How a `peers` entry is written, for error messages.
const PEER_FORM: &str = "ID@HOST:PORT entries separated by commas, such as 1@127.0.0.1:9402";

/// One controller voter: its node id and the cluster address the other voters dial.
/// Written `ID@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The voter's `node_id`.
    pub id: u32,
    /// The voter's cluster address, `host:port` (the host may be a name or an IP address;
    /// an IPv6 address is written in brackets).
    pub address: String,
}

/// Why a `peers` entry could not be read: it is not `ID@HOST:PORT` with a `u32` id, a
/// host and a port from 1 to 65535.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not ID@HOST:PORT, such as 1@127.0.0.1:9402")]
pub struct PeerSyntaxError(String);

impl FromStr for Peer {
    type Err = PeerSyntaxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entry = text.trim();
        let refuse = || PeerSyntaxError(entry.to_owned());
        let (id, address) = entry.split_once('@').ok_or_else(refuse)?;
        let id = id.trim().parse::<u32>().map_err(|_| refuse())?;
        let address = address.trim();
        let (host, port) = address.rsplit_once(':').ok_or_else(refuse)?;
        let port = port.parse::<u16>().map_err(|_| refuse())?;
        if host.is_empty() || host.contains(char::is_whitespace) || port == 0 {
            return Err(refuse());
        }
        Ok(Peer {
            id,
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.address)
    }
}

impl Peer {
    /// The port of [`address`](Self::address).
    fn port(&self) -> Option<u16> {
        self.address.rsplit_once(':')?.1.parse().ok()
    }

    /// The host of [`address`](Self::address) as an IP address, when it is one.
    fn ip(&self) -> Option<IpAddr> {
        let host = self.address.rsplit_once(':')?.0;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        host.parse().ok()
    }
}

impl Serialize for Peer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads `peers` from a TOML array of `ID@HOST:PORT` strings, or from one string of them
/// separated by commas (how a flag or an environment variable gives it; an empty string
/// is no peers).
pub(super) fn deserialize_peers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Peer>, D::Error> {
    struct Peers;

    impl<'de> Visitor<'de> for Peers {
        type Value = Vec<Peer>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(PEER_FORM)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<Peer>, E> {
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            text.split(',').map(parse_entry).collect()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut entries: A) -> Result<Vec<Peer>, A::Error> {
            let mut peers = Vec::new();
            while let Some(entry) = entries.next_element::<String>()? {
                peers.push(parse_entry(&entry)?);
            }
            Ok(peers)
        }
    }

    /// One entry, refused in serde's words so the config error names `peers`' form.
    fn parse_entry<E: de::Error>(entry: &str) -> Result<Peer, E> {
        entry
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(entry.trim()), &Peers))
    }

    deserializer.deserialize_any(Peers)
}

/// Cluster settings that do not fit together, or do not fit the client listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterConfigError {
    /// A quorum of 1 or 2 survives no failure, and an even count adds none over the odd
    /// one below it.
    #[error(
        "peers lists {count} voters; a cluster has 3 or 5 (or no peers at all, for a one-node cluster)"
    )]
    VoterCount {
        /// Entries in `peers`.
        count: usize,
    },
    /// Two entries share an id.
    #[error("peers names node {id} twice; each voter has its own node_id")]
    RepeatedPeerId {
        /// The id.
        id: u32,
    },
    /// Two entries share an address.
    #[error("peers gives the address {address} twice; each voter has its own cluster_listen")]
    RepeatedPeerAddress {
        /// The address.
        address: String,
    },
    /// This broker is not a voter.
    #[error(
        "peers does not name this broker (node_id {node_id}); every broker of a cluster is one of its voters, so add {node_id}@HOST:PORT with the address the other brokers reach this one's cluster_listen at, or set node_id to this broker's entry"
    )]
    NotAVoter {
        /// `node_id`.
        node_id: u32,
    },
    /// This broker's entry is not where it listens.
    #[error(
        "peers gives this broker (node_id {node_id}) the address {address}, but cluster_listen is {cluster_listen}: the other voters would dial where this broker does not listen; make the port (and the IP address, unless cluster_listen is 0.0.0.0 or [::]) agree"
    )]
    OwnAddress {
        /// `node_id`.
        node_id: u32,
        /// This broker's entry in `peers`.
        address: String,
        /// `cluster_listen`.
        cluster_listen: SocketAddr,
    },
    /// Clients cannot be told a wildcard address.
    #[error(
        "listen is {listen}, which clients cannot connect to; set advertised_listen (--advertised-listen or STRATA_ADVERTISED_LISTEN) to the host:port clients should use, such as broker1.example.com:{}",
        listen.port()
    )]
    NoAdvertisedListen {
        /// `listen`.
        listen: SocketAddr,
    },
    /// `advertised_listen` is not `host:port`.
    #[error(
        "advertised_listen is {given:?}; expected the host:port clients should connect to, such as broker1.example.com:9400"
    )]
    AdvertisedListen {
        /// The value given.
        given: String,
    },
    /// Two listeners would take the same port.
    #[error(
        "cluster_listen ({cluster_listen}) must differ from {other_key} ({other}); each listener needs its own port"
    )]
    SharedListener {
        /// `cluster_listen`.
        cluster_listen: SocketAddr,
        /// `listen` or `metrics_listen`.
        other_key: &'static str,
        /// Its address.
        other: SocketAddr,
    },
    /// A broker would be fenced after one lost heartbeat.
    #[error(
        "broker_session_timeout_ms ({session_timeout_ms}) must be more than twice broker_heartbeat_interval_ms ({heartbeat_interval_ms}), or one late heartbeat would fence a broker"
    )]
    BrokerSessionTooShort {
        /// `broker_session_timeout_ms`.
        session_timeout_ms: u64,
        /// `broker_heartbeat_interval_ms`.
        heartbeat_interval_ms: u64,
    },
    /// Followers would call elections while their leader is alive.
    #[error(
        "metadata_election_timeout_ms ({election_timeout_ms}) must be more than twice metadata_heartbeat_interval_ms ({heartbeat_interval_ms}), or voters would call elections while their leader is alive"
    )]
    ElectionTimeoutTooShort {
        /// `metadata_election_timeout_ms`.
        election_timeout_ms: u64,
        /// `metadata_heartbeat_interval_ms`.
        heartbeat_interval_ms: u64,
    },
}

/// Whether listeners on `a` and `b` would want the same port: the same port, not 0
/// (which picks a free one), on the same IP or where one is a wildcard.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether `text` is `host:port` with a non-empty host and a port.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.trim().is_empty() && port.parse::<u16>().is_ok())
}

impl Config {
    /// Checks the cluster settings.
    pub(super) fn validate_cluster(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "broker_heartbeat_interval_ms",
                self.broker_heartbeat_interval_ms,
            ),
            ("broker_session_timeout_ms", self.broker_session_timeout_ms),
            ("replica_lag_max_ms", self.replica_lag_max_ms),
            (
                "metadata_heartbeat_interval_ms",
                self.metadata_heartbeat_interval_ms,
            ),
            (
                "metadata_election_timeout_ms",
                self.metadata_election_timeout_ms,
            ),
            (
                "default_replication_factor",
                self.default_replication_factor.into(),
            ),
        ];
        if let Some(&(key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { key });
        }
        self.check_listeners()?;
        self.check_timings()?;
        Ok(self.check_peers()?)
    }

    fn check_listeners(&self) -> Result<(), ClusterConfigError> {
        match &self.advertised_listen {
            None if self.listen.ip().is_unspecified() => {
                return Err(ClusterConfigError::NoAdvertisedListen {
                    listen: self.listen,
                });
            }
            Some(given) if !is_host_port(given) => {
                return Err(ClusterConfigError::AdvertisedListen {
                    given: given.clone(),
                });
            }
            _ => {}
        }
        let others = [
            ("listen", self.listen),
            ("metrics_listen", self.metrics_listen),
        ];
        for (other_key, other) in others {
            if overlap(self.cluster_listen, other) {
                return Err(ClusterConfigError::SharedListener {
                    cluster_listen: self.cluster_listen,
                    other_key,
                    other,
                });
            }
        }
        Ok(())
    }

    fn check_timings(&self) -> Result<(), ClusterConfigError> {
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms.saturating_mul(2) {
            return Err(ClusterConfigError::BrokerSessionTooShort {
                session_timeout_ms: self.broker_session_timeout_ms,
                heartbeat_interval_ms: self.broker_heartbeat_interval_ms,
            });
        }
        if self.metadata_election_timeout_ms
            <= self.metadata_heartbeat_interval_ms.saturating_mul(2)
        {
            return Err(ClusterConfigError::ElectionTimeoutTooShort {
                election_timeout_ms: self.metadata_election_timeout_ms,
                heartbeat_interval_ms: self.metadata_heartbeat_interval_ms,
            });
        }
        Ok(())
    }

    fn check_peers(&self) -> Result<(), ClusterConfigError> {
        if self.peers.is_empty() {
            return Ok(());
        }
        if !matches!(self.peers.len(), 3 | 5) {
            return Err(ClusterConfigError::VoterCount {
                count: self.peers.len(),
            });
        }
        let mut ids = HashSet::new();
        let mut addresses = HashSet::new();
        for peer in &self.peers {
            if !ids.insert(peer.id) {
                return Err(ClusterConfigError::RepeatedPeerId { id: peer.id });
            }
            if !addresses.insert(peer.address.as_str()) {
                return Err(ClusterConfigError::RepeatedPeerAddress {
                    address: peer.address.clone(),
                });
            }
        }
        let own = self.own_peer().ok_or(ClusterConfigError::NotAVoter {
            node_id: self.node_id,
        })?;
        let listen = self.cluster_listen;
        let same_port = own.port() == Some(listen.port());
        let same_ip = listen.ip().is_unspecified() || own.ip().is_none_or(|ip| ip == listen.ip());
        if !(same_port && same_ip) {
            return Err(ClusterConfigError::OwnAddress {
                node_id: self.node_id,
                address: own.address.clone(),
                cluster_listen: listen,
            });
        }
        Ok(())
    }

    /// This broker's entry in `peers`.
    fn own_peer(&self) -> Option<&Peer> {
        self.peers.iter().find(|peer| peer.id == self.node_id)
    }

    /// The address other brokers reach this broker's cluster listener at: its `peers`
    /// entry, or `cluster_listen` in a one-node cluster.
    pub fn cluster_address(&self) -> String {
        self.own_peer()
            .map(|peer| peer.address.clone())
            .unwrap_or_else(|| self.cluster_listen.to_string())
    }

    /// The controller voters by node id, with their cluster addresses; this broker alone
    /// when `peers` is empty.
    pub fn voters(&self) -> BTreeMap<u64, String> {
        if self.peers.is_empty() {
            return BTreeMap::from([(self.node_id.into(), self.cluster_address())]);
        }
        self.peers
            .iter()
            .map(|peer| (peer.id.into(), peer.address.clone()))
            .collect()
    }

    /// `broker_heartbeat_interval_ms` as a duration.
    pub fn broker_heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.broker_heartbeat_interval_ms)
    }

    /// `broker_session_timeout_ms` as a duration.
    pub fn broker_session_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_session_timeout_ms)
    }

    /// `metadata_heartbeat_interval_ms` as a duration: how often the Raft leader
    /// heartbeats its followers.
    pub fn metadata_heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.metadata_heartbeat_interval_ms)
    }

    /// The shortest Raft election timeout, `metadata_election_timeout_ms`.
    pub fn metadata_election_timeout_min(&self) -> Duration {
        Duration::from_millis(self.metadata_election_timeout_ms)
    }

    /// The longest Raft election timeout: twice the shortest, so that voters' random
    /// timeouts spread and one of them usually wins the first election.
    pub fn metadata_election_timeout_max(&self) -> Duration {
        self.metadata_election_timeout_min().saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Override;
    use crate::config::load::tests::env;

    fn flags(pairs: &[(&str, &str)]) -> Vec<Override> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        Config::load(None, [], &flags(pairs))
            .unwrap_err()
            .to_string()
    }

    fn peer(id: u32, address: &str) -> Peer {
        Peer {
            id,
            address: address.to_owned(),
        }
    }

    const THREE: &str = "1@127.0.0.1:9402,2@127.0.0.1:9412,3@127.0.0.1:9422";

    #[test]
    fn the_defaults_are_a_one_node_cluster_on_the_port_after_metrics() {
        let config = Config::default();
        assert_eq!(config.cluster_listen, "127.0.0.1:9402".parse().unwrap());
        assert!(config.peers.is_empty());
        assert_eq!(
            config.broker_heartbeat_interval(),
            Duration::from_millis(250)
        );
        assert_eq!(config.broker_session_timeout(), Duration::from_secs(3));
        assert_eq!(config.default_replication_factor, 3);
        assert_eq!(config.default_replication_factor_clamped(), 1);
        assert_eq!(
            config.metadata_heartbeat_interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            config.metadata_election_timeout_min(),
            Duration::from_millis(500)
        );
        assert_eq!(
            config.metadata_election_timeout_max(),
            Duration::from_millis(1000)
        );
        assert_eq!(config.cluster_address(), "127.0.0.1:9402");
        assert_eq!(
            config.voters(),
            BTreeMap::from([(0, "127.0.0.1:9402".to_owned())])
        );
        assert!(Config::load(None, [], &[]).is_ok());
    }

    #[test]
    fn every_cluster_key_is_set_by_file_environment_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            "node_id = 2\ncluster_listen = \"127.0.0.1:9412\"\npeers = [\"1@127.0.0.1:9402\", \"2@127.0.0.1:9412\", \"3@127.0.0.1:9422\"]\nbroker_heartbeat_interval_ms = 100\n",
        )
        .unwrap();
        let environment = env(&[
            ("STRATA_BROKER_SESSION_TIMEOUT_MS", "1000"),
            ("STRATA_METADATA_HEARTBEAT_INTERVAL_MS", "50"),
            ("STRATA_METADATA_ELECTION_TIMEOUT_MS", "300"),
        ]);
        let config = Config::load(
            Some(&file),
            environment,
            &flags(&[("default_replication_factor", "5")]),
        )
        .unwrap();
        assert_eq!(config.cluster_listen, "127.0.0.1:9412".parse().unwrap());
        assert_eq!(
            config.peers,
            vec![
                peer(1, "127.0.0.1:9402"),
                peer(2, "127.0.0.1:9412"),
                peer(3, "127.0.0.1:9422")
            ]
        );
        assert_eq!(config.broker_heartbeat_interval_ms, 100);
        assert_eq!(config.broker_session_timeout_ms, 1_000);
        assert_eq!(config.metadata_heartbeat_interval_ms, 50);
        assert_eq!(config.metadata_election_timeout_ms, 300);
        assert_eq!(config.default_replication_factor, 5);
        assert_eq!(config.default_replication_factor_clamped(), 3);
        assert_eq!(config.cluster_address(), "127.0.0.1:9412");
        assert_eq!(config.voters().len(), 3);
        assert_eq!(config.voters()[&3], "127.0.0.1:9422");
    }

    #[test]
    fn peers_from_a_flag_or_variable_are_a_comma_separated_list() {
        let environment = env(&[(
            "STRATA_PEERS",
            " 1@a.example:9402 , 2@b.example:9402,3@[::1]:9402",
        )]);
        let config = Config::load(
            None,
            environment,
            &flags(&[("node_id", "3"), ("cluster_listen", "[::1]:9402")]),
        )
        .unwrap();
        assert_eq!(config.peers[0], peer(1, "a.example:9402"));
        assert_eq!(config.peers[2], peer(3, "[::1]:9402"));
        assert_eq!(config.cluster_address(), "[::1]:9402");
        let none = Config::load(None, env(&[("STRATA_PEERS", "")]), &[]).unwrap();
        assert!(none.peers.is_empty());
        let round_trip = toml::to_string(&config).unwrap();
        let again: Config = toml::from_str(&round_trip).unwrap();
        assert_eq!(again.peers, config.peers);
        assert_eq!(
            "1@".parse::<Peer>().unwrap_err().to_string(),
            "\"1@\" is not ID@HOST:PORT, such as 1@127.0.0.1:9402"
        );
        assert_eq!(peer(7, "h:1").to_string(), "7@h:1");
    }

    #[test]
    fn a_malformed_peer_is_named_with_the_form_it_takes() {
        let expected = "invalid configuration: peers: expected ID@HOST:PORT entries separated by commas, such as 1@127.0.0.1:9402";
        for given in [
            "1@127.0.0.1",
            "127.0.0.1:9402",
            "x@127.0.0.1:9402",
            "1@:9402",
            "1@127.0.0.1:0",
            "1@127.0.0.1:70000",
            "1@127.0.0.1:9402,,2@127.0.0.1:9412",
        ] {
            let error = refusal(&[("peers", given)]);
            assert_eq!(error, format!("{expected}, got {:?}", given), "{given}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "peers = 7\n").unwrap();
        let error = Config::load(Some(&file), [], &[]).unwrap_err().to_string();
        assert_eq!(error, format!("{expected}, got 7"));
    }

    #[test]
    fn a_cluster_has_three_or_five_distinct_voters() {
        for (count, list) in [
            (1, "1@127.0.0.1:9402"),
            (2, "1@127.0.0.1:9402,2@127.0.0.1:9412"),
            (
                4,
                "1@127.0.0.1:9402,2@127.0.0.1:9412,3@127.0.0.1:9422,4@127.0.0.1:9432",
            ),
        ] {
            assert_eq!(
                refusal(&[("node_id", "1"), ("peers", list)]),
                format!(
                    "invalid configuration: peers lists {count} voters; a cluster has 3 or 5 (or no peers at all, for a one-node cluster)"
                )
            );
        }
        let five = "1@127.0.0.1:9402,2@h2:1,3@h3:1,4@h4:1,5@h5:1";
        assert!(Config::load(None, [], &flags(&[("node_id", "1"), ("peers", five)])).is_ok());
        assert_eq!(
            refusal(&[
                ("node_id", "1"),
                ("peers", "1@127.0.0.1:9402,2@h2:1,2@h3:1")
            ]),
            "invalid configuration: peers names node 2 twice; each voter has its own node_id"
        );
        assert_eq!(
            refusal(&[
                ("node_id", "1"),
                ("peers", "1@127.0.0.1:9402,2@h2:1,3@h2:1")
            ]),
            "invalid configuration: peers gives the address h2:1 twice; each voter has its own cluster_listen"
        );
    }

    #[test]
    fn this_broker_is_a_voter_listening_where_its_entry_says() {
        assert_eq!(
            refusal(&[("node_id", "4"), ("peers", THREE)]),
            "invalid configuration: peers does not name this broker (node_id 4); every broker of a cluster is one of its voters, so add 4@HOST:PORT with the address the other brokers reach this one's cluster_listen at, or set node_id to this broker's entry"
        );
        assert_eq!(
            refusal(&[("node_id", "2"), ("peers", THREE)]),
            "invalid configuration: peers gives this broker (node_id 2) the address 127.0.0.1:9412, but cluster_listen is 127.0.0.1:9402: the other voters would dial where this broker does not listen; make the port (and the IP address, unless cluster_listen is 0.0.0.0 or [::]) agree"
        );
        let other_ip = refusal(&[
            ("node_id", "2"),
            ("peers", THREE),
            ("cluster_listen", "127.0.0.2:9412"),
        ]);
        assert!(
            other_ip.contains("cluster_listen is 127.0.0.2:9412"),
            "{other_ip}"
        );
        let port_zero = refusal(&[
            ("node_id", "2"),
            ("peers", THREE),
            ("cluster_listen", "127.0.0.1:0"),
        ]);
        assert!(
            port_zero.contains("cluster_listen is 127.0.0.1:0"),
            "{port_zero}"
        );
        // A wildcard listener is reached at the entry's address, a name or an IP.
        for (node_id, listen) in [("2", "0.0.0.0:9412"), ("1", "127.0.0.1:9402")] {
            let config = Config::load(
                None,
                [],
                &flags(&[
                    ("node_id", node_id),
                    ("peers", THREE),
                    ("cluster_listen", listen),
                ]),
            )
            .unwrap();
            assert_eq!(
                config.cluster_address(),
                config.voters()[&node_id.parse().unwrap()]
            );
        }
        let named = "1@broker1.example:9402,2@broker2.example:9402,3@broker3.example:9402";
        let config = Config::load(None, [], &flags(&[("node_id", "3"), ("peers", named)])).unwrap();
        assert_eq!(config.cluster_address(), "broker3.example:9402");
    }

    #[test]
    fn a_wildcard_listen_needs_an_advertised_address() {
        assert_eq!(
            refusal(&[("listen", "0.0.0.0:9400")]),
            "invalid configuration: listen is 0.0.0.0:9400, which clients cannot connect to; set advertised_listen (--advertised-listen or STRATA_ADVERTISED_LISTEN) to the host:port clients should use, such as broker1.example.com:9400"
        );
        assert!(refusal(&[("listen", "[::]:9500")]).starts_with(
            "invalid configuration: listen is [::]:9500, which clients cannot connect to;"
        ));
        let config = Config::load(
            None,
            env(&[("STRATA_ADVERTISED_LISTEN", "broker1.example:9400")]),
            &flags(&[("listen", "0.0.0.0:9400")]),
        )
        .unwrap();
        assert_eq!(config.advertised(), ("broker1.example".to_owned(), 9400));
        assert_eq!(
            refusal(&[("advertised_listen", "broker1.example")]),
            "invalid configuration: advertised_listen is \"broker1.example\"; expected the host:port clients should connect to, such as broker1.example.com:9400"
        );
    }

    #[test]
    fn the_cluster_listener_has_a_port_of_its_own() {
        assert_eq!(
            refusal(&[("cluster_listen", "127.0.0.1:9400")]),
            "invalid configuration: cluster_listen (127.0.0.1:9400) must differ from listen (127.0.0.1:9400); each listener needs its own port"
        );
        assert!(
            refusal(&[("cluster_listen", "0.0.0.0:9401")])
                .contains("must differ from metrics_listen (127.0.0.1:9401)")
        );
        // Port 0 picks a free port for each listener, as tests do.
        let config = Config::load(
            None,
            [],
            &flags(&[
                ("listen", "127.0.0.1:0"),
                ("metrics_listen", "127.0.0.1:0"),
                ("cluster_listen", "127.0.0.1:0"),
            ]),
        );
        assert!(config.is_ok(), "{config:?}");
        let other_ip = flags(&[("cluster_listen", "127.0.0.2:9400")]);
        assert!(Config::load(None, [], &other_ip).is_ok());
    }

    #[test]
    fn timeouts_leave_room_for_a_lost_heartbeat() {
        assert_eq!(
            refusal(&[("broker_session_timeout_ms", "500")]),
            "invalid configuration: broker_session_timeout_ms (500) must be more than twice broker_heartbeat_interval_ms (250), or one late heartbeat would fence a broker"
        );
        assert!(Config::load(None, [], &flags(&[("broker_session_timeout_ms", "501")])).is_ok());
        assert_eq!(
            refusal(&[("metadata_election_timeout_ms", "200")]),
            "invalid configuration: metadata_election_timeout_ms (200) must be more than twice metadata_heartbeat_interval_ms (100), or voters would call elections while their leader is alive"
        );
        for key in [
            "broker_heartbeat_interval_ms",
            "broker_session_timeout_ms",
            "replica_lag_max_ms",
            "metadata_heartbeat_interval_ms",
            "metadata_election_timeout_ms",
            "default_replication_factor",
        ] {
            assert_eq!(
                refusal(&[(key, "0")]),
                format!("invalid configuration: {key} must be at least 1")
            );
        }
    }
}
