//! A cluster of real `strata-broker` processes on loopback, for tests of the metadata
//! quorum, placement and routing: every broker a voter, each with its own data directory
//! and log file, fast timings, and `strata cluster status` read as JSON.
//!
//! Cluster ports are picked by binding port 0 and letting go (the brokers must be told
//! each other's addresses before any of them starts); a start that loses one of them to
//! another process is retried whole on fresh ports. Client and metrics ports are the
//! OS's choice at the first start and kept across restarts, so every address handed out
//! stays valid.
//!
//! With [`ClusterOptions::proxied`], every voter→voter connection goes through a proxy
//! of its own (one per directed pair): each broker's `--peers` names its own real address
//! and, for every other voter, the proxy from it to that voter. [`Cluster::cut_off`]
//! then cuts a voter off from the rest both ways, and [`Cluster::heal`] joins it again.
//! Clients always talk to the brokers directly.
//!
//! The fixture blocks while brokers start: use it from a multi-thread tokio runtime, so
//! the proxies keep forwarding meanwhile. When a test fails, the end of every broker's
//! log is printed.
//!
//! # Layout
//! - This file: starting the brokers, killing and restarting them, cuts, and the status.
//! - `status`: `strata cluster status --output json` as types.
//! - `views`: each broker's own answers (its metadata, its partitions' logs).

mod status;
mod views;
pub mod writer;

pub use status::{BrokerStatus, ClusterStatus, ControllerStatus, PartitionStatus, VoterStatus};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chaos::proxy::Proxy;
use crate::{BrokerProcess, Launch, StartFailure, WAIT, binary, log_tail, run_bounded};

/// Settings that make a cluster notice failures fast, yet stay stable on a loaded
/// two-core machine running debug builds.
pub const FAST_TIMINGS: [&str; 4] = [
    "broker_session_timeout_ms=3000",
    "broker_heartbeat_interval_ms=250",
    "metadata_election_timeout_ms=500",
    "metadata_heartbeat_interval_ms=100",
];

/// How many times a start is tried on fresh ports before the test fails.
const START_ATTEMPTS: usize = 5;

/// How often [`Cluster::wait_for`] asks for the status.
const POLL: Duration = Duration::from_millis(100);

/// How long one `strata cluster status` may take.
const STATUS_TIME_MAX: Duration = Duration::from_secs(15);

/// Lines of each broker's log printed when a test fails.
const LOG_LINES_ON_FAILURE: usize = 60;

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Brokers, all voters: 3 or 5. Their node ids are 1 to `brokers`.
    pub brokers: u32,
    /// Whether voter→voter connections go through proxies (for [`Cluster::cut_off`]).
    pub proxied: bool,
    /// `--set KEY=VALUE` settings on top of [`FAST_TIMINGS`].
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            brokers: 3,
            proxied: false,
            settings: Vec::new(),
        }
    }
}

/// One broker of the cluster.
#[derive(Debug)]
struct Member {
    process: BrokerProcess,
    running: bool,
    data_dir: PathBuf,
    log: PathBuf,
}

/// The brokers, their data and the proxies between them. Dropping it kills every
/// broker and removes the data.
#[derive(Debug)]
pub struct Cluster {
    members: BTreeMap<u32, Member>,
    /// Per directed pair of voters `(from, to)`, the proxy `from` dials `to` through.
    links: BTreeMap<(u32, u32), Proxy>,
    root: tempfile::TempDir,
}

impl Cluster {
    /// Starts a three-broker cluster and waits until it is ready (see
    /// [`start_with`](Self::start_with)).
    pub async fn start() -> Self {
        Self::start_with(ClusterOptions::default()).await
    }

    /// Starts the brokers, all at once, and waits until every broker knows the
    /// controller leader and sees every broker registered and alive.
    ///
    /// # Panics
    /// If a broker does not start (other than on a taken port), or the cluster is not
    /// ready within [`WAIT`]; on a current-thread runtime.
    pub async fn start_with(options: ClusterOptions) -> Self {
        let root = tempfile::Builder::new()
            .prefix("strata-cluster-")
            .tempdir()
            .expect("temp dir");
        let ids: Vec<u32> = (1..=options.brokers).collect();
        let mut links = BTreeMap::new();
        if options.proxied {
            for &from in &ids {
                for &to in ids.iter().filter(|&&to| to != from) {
                    let proxy = Proxy::start().await.expect("start a proxy");
                    links.insert((from, to), proxy);
                }
            }
        }
        let mut last_failure = None;
        for attempt in 0..START_ATTEMPTS {
            let attempt_dir = root.path().join(format!("attempt-{attempt}"));
            let started = tokio::task::block_in_place(|| {
                start_members(&ids, &attempt_dir, &links, &options.settings)
            });
            match started {
                Ok(members) => {
                    let cluster = Self {
                        members,
                        links,
                        root,
                    };
                    // Each broker's own view: a broker that has not applied the
                    // registrations yet refuses to place a topic.
                    for &id in &ids {
                        cluster
                            .wait_for_from(
                                id,
                                |status| status.has_leader() && status.alive().len() == ids.len(),
                                WAIT,
                                "a controller leader and every broker alive",
                            )
                            .await;
                    }
                    return cluster;
                }
                Err(failure) if failure.address_in_use() => last_failure = Some(failure),
                Err(failure) => panic!("a broker of the cluster did not start: {failure:?}"),
            }
        }
        panic!("no start on free ports in {START_ATTEMPTS} attempts: {last_failure:?}")
    }

    /// The node ids, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.members.keys().copied().collect()
    }

    fn member(&self, id: u32) -> &Member {
        self.members
            .get(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    fn member_mut(&mut self, id: u32) -> &mut Member {
        self.members
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    /// Broker `id`'s client address.
    pub fn address(&self, id: u32) -> String {
        self.member(id).process.address.clone()
    }

    /// Broker `id`'s metrics address.
    pub fn metrics_address(&self, id: u32) -> String {
        self.member(id).process.metrics_address.clone()
    }

    /// Every broker's client address, comma-separated, for `--bootstrap`.
    pub fn bootstrap(&self) -> String {
        let addresses: Vec<String> = self.ids().into_iter().map(|id| self.address(id)).collect();
        addresses.join(",")
    }

    /// Broker `id`'s process id.
    pub fn pid(&self, id: u32) -> u32 {
        self.member(id).process.pid()
    }

    /// Broker `id`'s data directory.
    pub fn data_dir(&self, id: u32) -> &Path {
        &self.member(id).data_dir
    }

    /// Whether broker `id` runs (it was not killed or terminated since its last start).
    pub fn is_running(&self, id: u32) -> bool {
        self.member(id).running
    }

    /// The node ids of the brokers that run.
    pub fn running(&self) -> Vec<u32> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_running(id))
            .collect()
    }

    /// `kill -9` broker `id`.
    pub fn kill_9(&mut self, id: u32) {
        let member = self.member_mut(id);
        member.process.kill_9();
        member.running = false;
    }

    /// Stops broker `id` with `SIGTERM`; returns its exit code.
    pub fn terminate(&mut self, id: u32) -> Option<i32> {
        let member = self.member_mut(id);
        member.running = false;
        member.process.terminate()
    }

    /// Starts broker `id` again on its data directory and ports (killing it first if it
    /// runs). Returns once it printed its address; it may not have registered yet.
    ///
    /// # Panics
    /// If it does not start; on a current-thread runtime.
    pub fn restart(&mut self, id: u32) {
        let member = self.member_mut(id);
        tokio::task::block_in_place(|| member.process.restart());
        member.running = true;
    }

    /// Starts every broker in `ids` again at the same time (see [`restart`](Self::restart)).
    pub fn restart_all(&mut self, ids: &[u32]) {
        let members: Vec<&mut Member> = self
            .members
            .iter_mut()
            .filter(|(id, _)| ids.contains(id))
            .map(|(_, member)| member)
            .collect();
        tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                for member in members {
                    scope.spawn(move || {
                        member.process.restart();
                        member.running = true;
                    });
                }
            });
        });
    }

    /// Cuts voter `id` off from every other voter, both ways: its connections to them
    /// and theirs to it are dropped, and new ones are closed at once.
    ///
    /// # Panics
    /// If the cluster is not [`proxied`](ClusterOptions::proxied).
    pub fn cut_off(&self, id: u32) {
        for proxy in self.links_of(id) {
            proxy.cut();
        }
    }

    /// Joins voter `id` to the others again after [`cut_off`](Self::cut_off).
    pub fn heal(&self, id: u32) {
        for proxy in self.links_of(id) {
            proxy.heal();
        }
    }

    /// Cuts the connections between voters `a` and `b`, both ways; every other link
    /// stays up.
    ///
    /// # Panics
    /// If the cluster is not [`proxied`](ClusterOptions::proxied).
    pub fn cut_between(&self, a: u32, b: u32) {
        for proxy in self.links_between(a, b) {
            proxy.cut();
        }
    }

    /// Joins voters `a` and `b` again after [`cut_between`](Self::cut_between).
    pub fn heal_between(&self, a: u32, b: u32) {
        for proxy in self.links_between(a, b) {
            proxy.heal();
        }
    }

    fn links_between(&self, a: u32, b: u32) -> Vec<&Proxy> {
        assert!(
            !self.links.is_empty(),
            "the cluster was started without proxies"
        );
        self.links
            .iter()
            .filter(|((from, to), _)| (*from, *to) == (a, b) || (*from, *to) == (b, a))
            .map(|(_, proxy)| proxy)
            .collect()
    }

    fn links_of(&self, id: u32) -> Vec<&Proxy> {
        assert!(
            !self.links.is_empty(),
            "the cluster was started without proxies"
        );
        self.links
            .iter()
            .filter(|((from, to), _)| *from == id || *to == id)
            .map(|(_, proxy)| proxy)
            .collect()
    }

    /// `strata cluster status --output json` against the first running broker.
    ///
    /// # Panics
    /// If it fails or prints something else than the status.
    pub async fn status(&self) -> ClusterStatus {
        let id = *self.running().first().expect("a running broker");
        self.status_from(id).await
    }

    /// `strata cluster status --output json` against broker `id` alone.
    ///
    /// # Panics
    /// If it fails or prints something else than the status.
    pub async fn status_from(&self, id: u32) -> ClusterStatus {
        self.try_status_from(id)
            .await
            .unwrap_or_else(|error| panic!("cluster status from broker {id}: {error}"))
    }

    /// `strata cluster status --output json` against broker `id` alone, or why it
    /// failed.
    pub async fn try_status_from(&self, id: u32) -> Result<ClusterStatus, String> {
        let run = self
            .cli(id, &["cluster", "status", "--output", "json"])
            .await;
        if run.code != Some(0) {
            return Err(format!("exit {:?}: {}", run.code, run.stderr.trim()));
        }
        serde_json::from_str(&run.stdout).map_err(|error| format!("{error} in {:?}", run.stdout))
    }

    /// Runs `strata ARGS` against broker `id` alone, off the runtime's workers.
    ///
    /// # Panics
    /// If it runs longer than 15 s.
    pub async fn cli(&self, id: u32, args: &[&str]) -> crate::CliRun {
        let mut command = std::process::Command::new(binary("strata"));
        command
            .env_remove("STRATA_BOOTSTRAP")
            .args(["--bootstrap", &self.address(id)])
            .args(args);
        tokio::task::spawn_blocking(move || run_bounded(&mut command, b"", STATUS_TIME_MAX))
            .await
            .expect("strata run")
    }

    /// Polls the status of the first running broker until `condition` holds; returns
    /// that status. A failed status call counts as not yet.
    ///
    /// # Panics
    /// If it does not hold `within`, saying `what` was awaited and the last status.
    pub async fn wait_for(
        &self,
        condition: impl Fn(&ClusterStatus) -> bool,
        within: Duration,
        what: &str,
    ) -> ClusterStatus {
        let id = *self.running().first().expect("a running broker");
        self.wait_for_from(id, condition, within, what).await
    }

    /// [`wait_for`](Self::wait_for), asking broker `id`.
    pub async fn wait_for_from(
        &self,
        id: u32,
        condition: impl Fn(&ClusterStatus) -> bool,
        within: Duration,
        what: &str,
    ) -> ClusterStatus {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.try_status_from(id).await {
                Ok(status) if condition(&status) => return status,
                Ok(status) => format!("{status:#?}"),
                Err(error) => error,
            };
            assert!(
                Instant::now() < deadline,
                "{within:?} passed, still waiting for {what} (asking broker {id}); last status: {last}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for a controller leader on broker `id`'s view and returns its id.
    pub async fn leader_from(&self, id: u32) -> u32 {
        let status = self
            .wait_for_from(id, ClusterStatus::has_leader, WAIT, "a controller leader")
            .await;
        status.controller.leader.expect("a leader")
    }

    /// Waits for a controller leader and returns its id.
    pub async fn leader(&self) -> u32 {
        let id = *self.running().first().expect("a running broker");
        self.leader_from(id).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("cluster data in {}", self.root.path().display());
        for (id, member) in &self.members {
            eprintln!(
                "---- broker {id} (running: {}), last lines of {}:\n{}",
                member.running,
                member.log.display(),
                log_tail(&member.log, LOG_LINES_ON_FAILURE)
            );
        }
    }
}

/// Starts one broker per id in `dir`, all at once, on fresh cluster ports; kills the
/// ones that started if another did not.
fn start_members(
    ids: &[u32],
    dir: &Path,
    links: &BTreeMap<(u32, u32), Proxy>,
    settings: &[String],
) -> Result<BTreeMap<u32, Member>, StartFailure> {
    let ports = free_ports(ids.len());
    let real: BTreeMap<u32, SocketAddr> = ids.iter().copied().zip(ports).collect();
    for ((_, to), proxy) in links {
        proxy.set_upstream(real[to]);
    }
    let mut launches = Vec::new();
    for &id in ids {
        let peers: Vec<String> = ids
            .iter()
            .map(|&peer| {
                let address = match links.get(&(id, peer)) {
                    Some(proxy) => proxy.address(),
                    None => real[&peer],
                };
                format!("{peer}@{address}")
            })
            .collect();
        let data_dir = dir.join(format!("broker-{id}"));
        std::fs::create_dir_all(&data_dir).expect("create a data dir");
        let log = dir.join(format!("broker-{id}.log"));
        let launch = Launch {
            stderr: Some(log.clone()),
            ..Launch::broker(
                [
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--cluster-listen".to_owned(),
                    real[&id].to_string(),
                    "--peers".to_owned(),
                    peers.join(","),
                ]
                .into_iter()
                .map(Into::into)
                .collect(),
            )
        };
        let mut all_settings: Vec<String> = FAST_TIMINGS.iter().map(|s| (*s).to_owned()).collect();
        all_settings.push("log_level=warn,strata_broker=info".to_owned());
        all_settings.extend(settings.iter().cloned());
        launches.push((id, data_dir, log, launch, all_settings));
    }
    let results: Vec<(u32, PathBuf, PathBuf, Result<BrokerProcess, StartFailure>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = launches
                .into_iter()
                .map(|(id, data_dir, log, launch, settings)| {
                    scope.spawn(move || {
                        let process = BrokerProcess::try_start(&data_dir, settings, launch);
                        (id, data_dir, log, process)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a start thread"))
                .collect()
        });
    let mut members = BTreeMap::new();
    let mut failure = None;
    for (id, data_dir, log, process) in results {
        match process {
            Ok(mut process) => {
                process.keep_ports();
                members.insert(
                    id,
                    Member {
                        process,
                        running: true,
                        data_dir,
                        log,
                    },
                );
            }
            Err(error) => failure = Some(error),
        }
    }
    match failure {
        None => Ok(members),
        // Dropping the members kills the brokers that did start.
        Some(failure) => Err(failure),
    }
}

/// `count` distinct loopback addresses whose ports were free a moment ago.
fn free_ports(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound address"))
        .collect()
}
