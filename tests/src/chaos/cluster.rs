//! The brokers of a run and the proxy in front of each. Clients know only the proxies'
//! addresses (each broker advertises its proxy's), so a nemesis can cut a client off
//! and a broker can restart on a new port without the clients noticing anything but
//! dropped connections.
//!
//! With more than one broker the brokers form a cluster (every broker a voter of the
//! metadata quorum), and every broker→broker connection goes through a proxy of its own,
//! one per directed link: a broker dials each peer, for the quorum and for replica
//! fetches, at the address its `--peers` names, which is the link proxy's. A nemesis
//! cuts a broker off both ways, one way, or slows its links through them. A broker's
//! own cluster listener gets a fresh port at each start and the links into it follow,
//! so a restart never waits for its old port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::error::ChaosError;
use super::node::{Node, NodeSpec};
use super::proxy::{Direction, Proxy};
use crate::cluster::FAST_TIMINGS;

/// How many times a cluster member's start is tried, each on a fresh cluster port (one
/// may be taken between its pick and the broker's bind).
const START_ATTEMPTS: usize = 3;

/// Per directed link `(from, to)` between brokers, by index: the proxy `from` dials
/// `to` through.
type Links = BTreeMap<(usize, usize), Proxy>;

/// The brokers, their proxies and the links between them, index for index. Owns the
/// broker processes (dropping it kills them) and the proxies. Driven from one thread.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    proxies: Vec<Arc<Proxy>>,
    links: Links,
}

impl Cluster {
    /// Starts one broker per spec behind one proxy each, all at once. A spec's settings
    /// get `advertised_listen` set to its proxy; with more than one spec, the brokers
    /// form a cluster with fast failure detection (node ids 1, 2, ... in spec order).
    ///
    /// # Errors
    /// If a proxy cannot bind or a broker does not start.
    ///
    /// # Panics
    /// On a current-thread runtime (a broker's start blocks its worker).
    pub async fn start(specs: Vec<NodeSpec>) -> Result<Self, ChaosError> {
        let count = specs.len();
        let mut cluster = Self {
            nodes: Vec::new(),
            proxies: Vec::new(),
            links: Links::new(),
        };
        if count > 1 {
            for from in 0..count {
                for to in (0..count).filter(|&to| to != from) {
                    let proxy = Proxy::start()
                        .await
                        .map_err(ChaosError::io("start a link proxy"))?;
                    cluster.links.insert((from, to), proxy);
                }
            }
        }
        for mut spec in specs {
            let proxy = Proxy::start()
                .await
                .map_err(ChaosError::io("start a proxy"))?;
            spec.settings
                .push(format!("advertised_listen={}", proxy.address()));
            if count > 1 {
                spec.settings
                    .extend(FAST_TIMINGS.iter().map(|setting| (*setting).to_owned()));
                // Elections and ISR changes in the log are the evidence of a violation.
                spec.settings
                    .push("log_level=warn,strata_broker=info".to_owned());
            }
            cluster.nodes.push(Node::new(spec));
            cluster.proxies.push(Arc::new(proxy));
        }
        let every: Vec<usize> = (0..count).collect();
        // Blocks this worker only while the brokers start; the proxies keep running.
        tokio::task::block_in_place(|| cluster.restart_all(&every))?;
        Ok(cluster)
    }

    /// How many brokers.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no broker (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The bootstrap list clients use: every proxy's address.
    pub fn bootstrap(&self) -> String {
        self.client_addresses().join(",")
    }

    /// Each broker's client-facing proxy address, by index.
    pub fn client_addresses(&self) -> Vec<String> {
        self.proxies
            .iter()
            .map(|proxy| proxy.address().to_string())
            .collect()
    }

    /// Broker `index`.
    pub fn node(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// The brokers that run and are not paused.
    pub fn answering(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].is_running() && !self.nodes[index].is_paused())
            .collect()
    }

    /// The proxy in front of broker `index`.
    pub fn proxy(&self, index: usize) -> &Proxy {
        &self.proxies[index]
    }

    /// Broker `index`'s data directory.
    pub fn data_dir(&self, index: usize) -> &Path {
        self.nodes[index].data_dir()
    }

    /// Starts broker `index` again on its data (after a kill) and points its proxy at
    /// the new port. Blocks until it printed its address.
    ///
    /// # Errors
    /// If it does not start.
    pub fn restart(&mut self, index: usize) -> Result<(), ChaosError> {
        self.restart_all(&[index])
    }

    /// Starts every broker in `indices` again at the same time (a cluster member may
    /// print its address only once a quorum answers), as [`restart`](Self::restart).
    ///
    /// # Errors
    /// If one does not start.
    pub fn restart_all(&mut self, indices: &[usize]) -> Result<(), ChaosError> {
        let links = &self.links;
        let count = self.nodes.len();
        let started: Vec<(usize, Result<SocketAddr, ChaosError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter_mut()
                .enumerate()
                .filter(|(index, _)| indices.contains(index))
                .map(|(index, node)| {
                    scope.spawn(move || (index, start_member(node, index, count, links)))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a start thread does not panic"))
                .collect()
        });
        for (index, address) in started {
            self.proxies[index].set_upstream(address?);
        }
        Ok(())
    }

    /// Cuts broker `index` off from every other broker, both ways: open connections
    /// dropped, new ones closed at once. Clients still reach it.
    pub fn isolate(&self, index: usize) {
        for proxy in self.links_of(index) {
            proxy.cut();
        }
    }

    /// Cuts broker `index` off one way: what it sends to the other brokers is discarded,
    /// while what they send reaches it. Connections stay open.
    pub fn silence(&self, index: usize) {
        for ((from, _), proxy) in self
            .links
            .iter()
            .filter(|((from, to), _)| *from == index || *to == index)
        {
            // On a link it dials, it is the client; on a link into it, the upstream.
            let outgoing = if *from == index {
                Direction::ToUpstream
            } else {
                Direction::ToClient
            };
            proxy.cut_one_way(outgoing);
        }
    }

    /// Delays every chunk on broker `index`'s links, both ways, by `delay`.
    pub fn slow_down(&self, index: usize, delay: Duration) {
        for proxy in self.links_of(index) {
            proxy.set_delay(delay);
        }
    }

    /// The proxy broker `from` dials broker `to` through: cutting it stops what `from`
    /// asks of `to` (its replica fetches from `to`, its heartbeats if `to` is the
    /// controller), while `to` still reaches `from` on the link the other way.
    ///
    /// # Panics
    /// If there is no such link (one broker, or `from == to`).
    pub fn link(&self, from: usize, to: usize) -> &Proxy {
        &self.links[&(from, to)]
    }

    /// Undoes [`isolate`](Self::isolate), [`silence`](Self::silence) and
    /// [`slow_down`](Self::slow_down) of broker `index`: its links forward again without
    /// delay, and their connections are reset (a one-way cut leaves broken streams).
    pub fn rejoin(&self, index: usize) {
        for proxy in self.links_of(index) {
            proxy.heal();
            proxy.set_delay(Duration::ZERO);
            proxy.drop_connections();
        }
    }

    fn links_of(&self, index: usize) -> impl Iterator<Item = &Proxy> {
        self.links
            .iter()
            .filter(move |((from, to), _)| *from == index || *to == index)
            .map(|(_, proxy)| proxy)
    }
}

/// Starts `node` (broker `index` of `count`); a cluster member gets a fresh cluster
/// port, named in its own `--peers` entry, and the links into it point there.
fn start_member(
    node: &mut Node,
    index: usize,
    count: usize,
    links: &Links,
) -> Result<SocketAddr, ChaosError> {
    if links.is_empty() {
        return node.start();
    }
    let mut attempt = 1;
    loop {
        let listen = free_port()?;
        node.spec_mut().args = member_args(index, count, listen, links);
        for ((_, to), proxy) in links {
            if *to == index {
                proxy.set_upstream(listen);
            }
        }
        match node.start() {
            Ok(address) => return Ok(address),
            Err(error) if attempt >= START_ATTEMPTS => return Err(error),
            Err(_) => attempt += 1,
        }
    }
}

/// A cluster member's flags: its node id (index + 1), its cluster listener, and every
/// voter at the address it dials: itself at `listen`, the others through its links.
fn member_args(index: usize, count: usize, listen: SocketAddr, links: &Links) -> Vec<String> {
    let peers: Vec<String> = (0..count)
        .map(|peer| {
            let address = match links.get(&(index, peer)) {
                Some(proxy) => proxy.address(),
                None => listen,
            };
            format!("{}@{address}", peer + 1)
        })
        .collect();
    vec![
        "--node-id".to_owned(),
        (index + 1).to_string(),
        "--cluster-listen".to_owned(),
        listen.to_string(),
        "--peers".to_owned(),
        peers.join(","),
    ]
}

/// A loopback address whose port was free a moment ago.
fn free_port() -> Result<SocketAddr, ChaosError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(ChaosError::io("pick a free cluster port"))?;
    listener
        .local_addr()
        .map_err(ChaosError::io("pick a free cluster port"))
}
