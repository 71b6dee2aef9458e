//! The listener: accepts connections within `connections_max`, gives them the broker's
//! budgets to share (request memory, partitions watched by parked fetches), runs
//! background jobs (retention, group session expiry), and shuts down gracefully.
//!
//! Shutdown order: report not ready on `/readyz`; stop accepting; tell every connection
//! to stop reading; wait (up to `shutdown_timeout_ms`) for in-flight requests to be
//! answered; then flush and close every log cleanly so the next start skips recovery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_protocol::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::cluster::{Cluster, reconcile};
use crate::config::Config;
use crate::connection::{Budgets, Origin};
use crate::data_dir::DataDirLock;
use crate::partition::Storage;
use crate::replication::Replication;
use crate::startup::StartupError;
use crate::topics::AdminError;
use crate::{connection, metrics};

/// How long a one-node cluster may take to elect itself and register before its start
/// fails: it needs no network, so only a data directory made for another node id (whose
/// Raft log names other voters) takes longer.
const SINGLE_NODE_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A started broker: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Server {
    /// The client listener's address (useful with port 0).
    pub address: SocketAddr,
    /// The metrics listener's address.
    pub metrics_address: SocketAddr,
    shutdown: CancellationToken,
    endpoint: Arc<metrics::Endpoint>,
    stop_metrics: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, binds both listeners and starts serving.
    ///
    /// # Errors
    /// [`StartupError`] if a port cannot be bound, the data directory cannot be locked or
    /// opened, or its data cannot be recovered.
    pub async fn start(config: Config) -> Result<Server, StartupError> {
        let storage = Storage::start().map_err(|source| StartupError::Process {
            what: "the storage flusher",
            source,
        })?;
        Self::start_with(config, storage).await
    }

    /// As [`start`](Self::start), with the given storage (tests inject I/O through it).
    ///
    /// The metrics listener serves from the moment it is bound, with `/readyz` answering
    /// 503 until recovery is done.
    ///
    /// # Errors
    /// As for [`start`](Self::start).
    pub async fn start_with(config: Config, storage: Storage) -> Result<Server, StartupError> {
        let (listener, address) = bind(config.listen, "for clients").await?;
        let (metrics_listener, metrics_address) =
            bind(config.metrics_listen, "for metrics").await?;
        // A one-node cluster has no peers to talk to: its Raft listener only needs to
        // exist, on a port of its own, so that brokers side by side never collide.
        let cluster_listen = if config.peers.is_empty() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            config.cluster_listen
        };
        let (cluster_listener, cluster_address) = bind(cluster_listen, "for the cluster").await?;
        let endpoint = Arc::new(metrics::Endpoint::new(metrics::install()));
        let stop_metrics = CancellationToken::new();
        tokio::spawn(metrics::serve(
            metrics_listener,
            endpoint.clone(),
            stop_metrics.clone(),
        ));
        // Stops the metrics listener again if recovery fails.
        let failed = stop_metrics.clone().drop_guard();
        let mut config = config;
        if config.advertised_listen.is_none() {
            config.advertised_listen = Some(address.to_string());
        }
        let config = Arc::new(config);
        let data_dir = config.data_dir.clone();
        let lock = tokio::task::spawn_blocking(move || DataDirLock::acquire(&data_dir)).await??;
        let cluster = Cluster::start(&config, cluster_listener).await?;
        let opening = (config.clone(), cluster.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let (config, cluster) = opening;
            Broker::open(config, storage, cluster, lock)
        })
        .await
        .map_err(StartupError::from)
        .and_then(|opened| opened);
        let broker = Arc::new(stop_on_error(&cluster, opened).await?);
        stop_on_error(&cluster, check_no_older_topics(&broker)).await?;
        let shutdown = broker.shutdown.clone();
        let joining = join(broker.clone(), cluster_address);
        if cluster.is_multi_node() {
            tokio::spawn(async move {
                if let Err(error) = joining.await {
                    tracing::error!(%error.message, "cannot enter this data directory's topics into the cluster");
                }
            });
        } else {
            let joined = match tokio::time::timeout(SINGLE_NODE_JOIN_TIMEOUT, joining).await {
                Ok(joined) => joined.map_err(StartupError::Import),
                Err(_) => Err(StartupError::Import(AdminError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!(
                        "the one-node metadata quorum elected no leader within {} s; if node_id changed since this data directory was first used, start with the node_id it had",
                        SINGLE_NODE_JOIN_TIMEOUT.as_secs()
                    ),
                ))),
            };
            stop_on_error(&cluster, joined).await?;
        }
        let source = broker.clone();
        endpoint.ready(Arc::new(move || {
            let mut text = metrics::topic::render(&source.topics.all());
            text.push_str(&source.groups.lag_metrics(&source.topics));
            let offline = source.topics.offline_count() + source.groups.offline_count();
            text.push_str(&metrics::topic::render_offline(offline));
            text.push_str(&metrics::cluster::render(&source.cluster));
            text
        }));
        failed.disarm();
        tokio::spawn(broker.groups.clone().expire_sessions(shutdown.clone()));
        tokio::spawn(retention(broker.clone(), shutdown.clone()));
        Replication::start(&broker);
        if let Some(replicas) = broker.cluster.take_replication_streams() {
            tokio::spawn(serve_replicas(replicas, broker.clone(), shutdown.clone()));
        }
        let done = tokio::spawn(accept(listener, broker, shutdown.clone()));
        tracing::info!(%address, %metrics_address, %cluster_address, "strata-broker serving");
        Ok(Server {
            address,
            metrics_address,
            shutdown,
            endpoint,
            stop_metrics,
            done,
        })
    }

    /// Stops the broker gracefully and waits until every log is closed. `/readyz` turns
    /// 503 first, and the metrics listener serves until the end.
    pub async fn shutdown(self) {
        self.endpoint.stopping();
        self.shutdown.cancel();
        if let Err(error) = self.done.await {
            tracing::error!(%error, "broker stopped abnormally");
        }
        self.stop_metrics.cancel();
    }
}

/// Registers the broker with the cluster and, once registered, keeps its logs in step
/// with the metadata; a one-node cluster then enters the topics of an older data
/// directory into the metadata and creates the offsets log, before it serves.
async fn join(broker: Arc<Broker>, cluster_address: SocketAddr) -> Result<(), AdminError> {
    let config = &broker.config;
    let (host, port) = config.advertised();
    let address = format!("{host}:{port}");
    let cluster_address = if config.peers.is_empty() {
        cluster_address.to_string()
    } else {
        config.cluster_address()
    };
    let stop = broker.shutdown.clone();
    if !broker
        .cluster
        .join(
            config,
            (address, cluster_address),
            broker.unclean_start,
            stop.clone(),
        )
        .await
    {
        return Ok(());
    }
    tokio::spawn(reconcile::follow(broker.clone(), stop));
    if !broker.cluster.is_multi_node() {
        reconcile::import(&broker).await?;
        reconcile::create_offsets_log(&broker).await?;
    }
    Ok(())
}

/// Stops the metadata quorum if `result` is a failed start, so that none of its tasks
/// outlives the start (or writes to the data directory once its lock is released).
async fn stop_on_error<T>(
    cluster: &Cluster,
    result: Result<T, StartupError>,
) -> Result<T, StartupError> {
    if result.is_err() {
        cluster.shutdown().await;
    }
    result
}

/// Refuses to join a cluster with topics of an older single node's data directory: they
/// would need placing, and their names may be taken in the cluster.
fn check_no_older_topics(broker: &Broker) -> Result<(), StartupError> {
    if !broker.cluster.is_multi_node() {
        return Ok(());
    }
    let log_id = broker.cluster.image().log_id.clone();
    let older: Vec<String> = broker
        .topics
        .all()
        .iter()
        .filter(|topic| !topic.is_of(&log_id))
        .map(|topic| topic.name.clone())
        .collect();
    if older.is_empty() {
        return Ok(());
    }
    Err(StartupError::Import(AdminError::new(
        ErrorCode::InvalidConfig,
        format!(
            "the data directory holds topics that this cluster's metadata log did not make ({}): of a single-node broker, or of a metadata log since wiped; start it without --peers to keep them, or give this broker an empty data directory to join a cluster",
            older.join(", ")
        ),
    )))
}

/// Binds `address`; returns the listener and the address it got (the port, given 0).
async fn bind(
    address: SocketAddr,
    purpose: &'static str,
) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listen_error = |source| StartupError::Listen {
        purpose,
        address,
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

async fn accept(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(broker.config.connections_max));
    let budgets = Budgets::new(&broker.config);
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Running out of file descriptors must not spin or kill the broker.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::connection_rejected();
            tracing::warn!(
                limit = broker.config.connections_max,
                "connections_max reached; closing new connection"
            );
            drop(stream);
            continue;
        };
        let (broker, budgets, shutdown) = (broker.clone(), budgets.clone(), shutdown.clone());
        connections.spawn(async move {
            metrics::connection_opened();
            connection::serve(stream, broker, (budgets, Origin::Clients), shutdown).await;
            metrics::connection_closed();
            drop(slot);
        });
    }
    drop(listener);
    broker.cluster.leave().await;
    Replication::step_down(&broker);
    connections.close();
    let grace = Duration::from_millis(broker.config.shutdown_timeout_ms);
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests still running after shutdown_timeout_ms; closing logs anyway"
        );
    }
    let closing = broker.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!(%error, "closing logs failed");
    }
    broker.cluster.shutdown().await;
    tracing::info!("strata-broker stopped");
}

/// Replica connections served at once: each broker opens one to each leader it follows.
const REPLICA_CONNECTIONS_MAX: usize = 64;

/// Serves the replicas' connections the cluster listener hands over, with the same
/// connection code as clients' (the replica-fetch API is answered only here).
async fn serve_replicas(
    mut replicas: mpsc::Receiver<TcpStream>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let budgets = Budgets::new(&broker.config);
    let slots = Arc::new(Semaphore::new(REPLICA_CONNECTIONS_MAX));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            stream = replicas.recv() => match stream {
                Some(stream) => stream,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = REPLICA_CONNECTIONS_MAX,
                "too many replica connections; closing a new one"
            );
            continue;
        };
        let serving = (broker.clone(), budgets.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (broker, budgets, shutdown) = serving;
            connection::serve(stream, broker, (budgets, Origin::Cluster), shutdown).await;
            drop(slot);
        });
    }
}

async fn retention(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_millis(
        broker.config.retention_check_interval_ms,
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let broker = broker.clone();
        let now_ms = crate::partition::now_ms();
        if let Err(error) =
            tokio::task::spawn_blocking(move || broker.topics.apply_retention(now_ms)).await
        {
            tracing::error!(%error, "retention failed");
        }
    }
}
