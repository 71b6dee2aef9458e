//! The brokers of a run and the proxy in front of each. Clients know only the proxies'
//! addresses (each broker advertises its proxy's), so a nemesis can cut a client off
//! and a broker can restart on a new port without the clients noticing anything but
//! dropped connections.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::error::ChaosError;
use super::node::{Node, NodeSpec};
use super::proxy::Proxy;

/// The brokers and their proxies, index for index. Owns the broker processes (dropping
/// it kills them); the proxies are shared with the runtime that runs them.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    proxies: Vec<Arc<Proxy>>,
}

impl Cluster {
    /// Starts one broker per spec behind one proxy each. A spec's settings get
    /// `advertised_listen` set to its proxy.
    ///
    /// # Errors
    /// If a proxy cannot bind or a broker does not start.
    ///
    /// # Panics
    /// On a current-thread runtime (a broker's start blocks its worker).
    pub async fn start(specs: Vec<NodeSpec>) -> Result<Self, ChaosError> {
        let mut cluster = Self {
            nodes: Vec::new(),
            proxies: Vec::new(),
        };
        for mut spec in specs {
            let proxy = Proxy::start()
                .await
                .map_err(ChaosError::io("start a proxy"))?;
            spec.settings
                .push(format!("advertised_listen={}", proxy.address()));
            cluster.nodes.push(Node::new(spec));
            cluster.proxies.push(Arc::new(proxy));
        }
        for index in 0..cluster.nodes.len() {
            // Blocks this worker only while the broker starts; the proxies keep running.
            tokio::task::block_in_place(|| cluster.restart(index))?;
        }
        Ok(cluster)
    }

    /// The bootstrap list clients use: every proxy's address.
    pub fn bootstrap(&self) -> String {
        let addresses: Vec<String> = self
            .proxies
            .iter()
            .map(|proxy| proxy.address().to_string())
            .collect();
        addresses.join(",")
    }

    /// Broker `index`.
    pub fn node(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
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
    pub fn restart(&mut self, index: usize) -> Result<SocketAddr, ChaosError> {
        let address = self.nodes[index].start()?;
        self.proxies[index].set_upstream(address);
        Ok(address)
    }
}
