//! Registration, heartbeats and fencing.
//!
//! A broker registers once per start (the quorum gives it a new incarnation), then
//! heartbeats to the controller, the quorum's leader, every
//! `broker_heartbeat_interval_ms`. The controller keeps each broker's last heartbeat in
//! memory ([`Sessions`]) and fences a broker silent for `broker_session_timeout_ms`; a
//! fenced broker that heartbeats again is unfenced. Only the fencing and unfencing are
//! log entries, so heartbeats cost no disk writes. A newly elected controller starts
//! every session afresh, so an election never fences anyone at once.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use serde::{Deserialize, Serialize};

use super::controller::{HeartbeatReply, LeaderRequest, Sessions, decode_request, encode_request};
use super::metadata::{Command, Image, Outcome};
use super::raft::{LeaderService, Quorum};
use crate::config::Config;
use crate::group::store::OFFSETS_LOG;

/// The controller's answer to a [`LeaderRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum LeaderReply {
    /// To a heartbeat.
    Heartbeat(HeartbeatReply),
    /// To a status request.
    Status(ControllerStatus),
    /// The request could not be read.
    Invalid(String),
}

/// The controller's view of the quorum and the brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// The controller's node id.
    pub leader: u32,
    /// Its Raft term.
    pub term: u64,
    /// Each voter's id and how many entries its log is behind the controller's, if known.
    pub voters: Vec<(u32, Option<u64>)>,
    /// Each broker's id and the metadata offset it reported applying, if it reported one.
    pub applied: Vec<(u32, u64)>,
    /// The controller's last log index.
    pub last_log_index: u64,
}

/// The controller's half: answers heartbeats and status requests while this broker leads
/// the quorum.
#[derive(Debug)]
pub(super) struct ControllerService {
    node_id: u32,
    sessions: Mutex<Sessions>,
    image: watch::Receiver<Arc<Image>>,
    quorum: OnceLock<Quorum>,
    /// How many brokers the cluster was configured with.
    voters: usize,
    /// The create of the offsets log, proposed once every configured broker is alive.
    offsets_log: Command,
}

impl ControllerService {
    pub(super) fn new(config: &Config, image: watch::Receiver<Arc<Image>>) -> Arc<Self> {
        Arc::new(Self {
            node_id: config.node_id,
            sessions: Mutex::new(Sessions::new(config.broker_session_timeout())),
            image,
            quorum: OnceLock::new(),
            voters: config.peers.len().max(1),
            offsets_log: super::reconcile::offsets_log_create(config),
        })
    }

    /// Gives the service the quorum it serves, once it has started.
    pub(super) fn attach(&self, quorum: Quorum) {
        // Set once, right after the quorum starts; a second call would be a bug.
        let _ = self.quorum.set(quorum);
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn heartbeat(&self, id: u32, incarnation: u64, applied: u64) -> BoxFuture<'static, Vec<u8>> {
        let image = self.image.borrow().clone();
        let reply =
            self.sessions()
                .heartbeat(id, incarnation, applied, std::time::Instant::now(), &image);
        let quorum = self.quorum.get().cloned();
        async move {
            if let (HeartbeatReply::Unfence, Some(quorum)) = (&reply, quorum) {
                let command = Command::UnfenceBroker { id, incarnation };
                let deadline = Instant::now() + Duration::from_secs(2);
                if let Err(error) = quorum
                    .propose(super::metadata::encode_command(&command), deadline)
                    .await
                {
                    tracing::warn!(broker = id, %error, "cannot unfence broker");
                }
            }
            encode(&LeaderReply::Heartbeat(reply))
        }
        .boxed()
    }
}

impl ControllerService {
    /// The quorum and broker lags, while this broker leads the quorum.
    pub(super) fn status(&self) -> Option<ControllerStatus> {
        let status = self.quorum.get()?.status();
        if status.leader != Some(status.node_id) {
            return None;
        }
        let voters = status
            .voters
            .iter()
            .map(|voter| {
                let lag = voter
                    .matched
                    .map(|matched| status.last_log_index.saturating_sub(matched));
                (voter.id as u32, lag)
            })
            .collect();
        Some(ControllerStatus {
            leader: self.node_id,
            term: status.term,
            voters,
            applied: {
                let image = self.image.borrow().clone();
                let sessions = self.sessions();
                image
                    .brokers
                    .keys()
                    .filter_map(|&id| Some((id, sessions.applied(id)?)))
                    .collect()
            },
            last_log_index: status.last_log_index,
        })
    }
}

impl LeaderService for ControllerService {
    fn handle(&self, _from: u64, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        match decode_request(&request) {
            Ok(LeaderRequest::Heartbeat {
                id,
                incarnation,
                applied,
            }) => self.heartbeat(id, incarnation, applied),
            Ok(LeaderRequest::Status) => {
                let reply = self.status().map_or_else(
                    || LeaderReply::Invalid("this broker no longer leads the quorum".into()),
                    LeaderReply::Status,
                );
                async move { encode(&reply) }.boxed()
            }
            Err(message) => async move { encode(&LeaderReply::Invalid(message)) }.boxed(),
        }
    }
}

fn encode(reply: &LeaderReply) -> Vec<u8> {
    serde_json::to_vec(reply).expect("controller replies serialize")
}

/// Registers this broker (retrying until the quorum answers or `stop` fires), then starts
/// its heartbeats and its controller duties. Returns whether it registered.
pub(super) async fn join(
    cluster: &Arc<Cluster>,
    config: &Config,
    (address, cluster_address): (String, String),
    unclean: bool,
    stop: CancellationToken,
) -> bool {
    let register = Command::RegisterBroker {
        id: config.node_id,
        address,
        cluster_address,
        log_id: fresh_log_id(config.node_id),
        unclean,
    };
    if !register_until(cluster, &register, &stop).await {
        return false;
    }
    let interval = config.broker_heartbeat_interval();
    // A registration again, by a process that never stopped, lost nothing.
    let again = match register {
        Command::RegisterBroker {
            id,
            address,
            cluster_address,
            log_id,
            ..
        } => Command::RegisterBroker {
            id,
            address,
            cluster_address,
            log_id,
            unclean: false,
        },
        other => other,
    };
    tokio::spawn(heartbeats(cluster.clone(), again, interval, stop.clone()));
    tokio::spawn(control(cluster.clone(), interval, stop));
    true
}

/// A name for a metadata log that no other log has: the time, the process and the node.
fn fresh_log_id(node_id: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{nanos:x}-{:x}-{node_id}", std::process::id())
}

/// Proposes `register` until it is applied; stores the incarnation it gave.
async fn register_until(cluster: &Cluster, register: &Command, stop: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return false,
            attempt = cluster.commit(register, Instant::now() + Duration::from_secs(5)) => attempt,
        };
        match attempt {
            Ok((_, Outcome::Registered { incarnation })) => {
                cluster
                    .incarnation
                    .store(incarnation, std::sync::atomic::Ordering::Release);
                tracing::info!(
                    node_id = cluster.node_id,
                    incarnation,
                    "registered with the cluster"
                );
                return true;
            }
            Ok((_, outcome)) => tracing::warn!(?outcome, "registration refused; retrying"),
            Err(error) => tracing::info!(%error.message, "registration not answered yet; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Heartbeats to the controller; registers again if the controller no longer knows this
/// incarnation.
async fn heartbeats(
    cluster: Arc<Cluster>,
    register: Command,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = ticker(interval);
    while next_tick(&mut ticks, &stop).await {
        let Some(incarnation) = cluster.incarnation() else {
            continue;
        };
        let request = LeaderRequest::Heartbeat {
            id: cluster.node_id,
            incarnation,
            applied: cluster.image().applied,
        };
        let request = encode_request(&request);
        let deadline = Instant::now() + interval.max(Duration::from_millis(500));
        let reply = match cluster.quorum.call_leader(request, deadline).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::debug!(%error, "heartbeat not answered");
                continue;
            }
        };
        if let Ok(LeaderReply::Heartbeat(HeartbeatReply::Register)) =
            serde_json::from_slice::<LeaderReply>(&reply)
        {
            tracing::warn!(
                "the controller does not know this broker's incarnation; registering again"
            );
            register_until(&cluster, &register, &stop).await;
        }
    }
}

/// While this broker leads the quorum, fences brokers whose sessions expired.
async fn control(cluster: Arc<Cluster>, interval: Duration, stop: CancellationToken) {
    let me = u64::from(cluster.node_id);
    let mut leader = cluster.quorum.leader();
    let service = &cluster.controller;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = leader.wait_for(|leader| *leader == Some(me)) => if changed.is_err() { return },
        }
        tracing::info!(node_id = me, "this broker is the controller");
        service
            .sessions()
            .reset(std::time::Instant::now(), &cluster.image());
        let mut ticks = ticker(interval);
        loop {
            if !next_tick(&mut ticks, &stop).await {
                return;
            }
            if *leader.borrow_and_update() != Some(me) {
                break;
            }
            let expired = service
                .sessions()
                .expired(std::time::Instant::now(), &cluster.image());
            for command in expired {
                tracing::warn!(?command, "broker session expired; fencing it");
                let deadline = Instant::now() + Duration::from_secs(2);
                if let Err(error) = cluster.commit(&command, deadline).await {
                    tracing::warn!(%error.message, "cannot fence broker");
                }
            }
            elect_preferred(&cluster).await;
            // The offsets log goes over every broker once all are up, so groups spread;
            // a FindCoordinator before that creates it over those alive then.
            let image = cluster.image();
            if !image.topics.contains_key(OFFSETS_LOG)
                && image.alive_brokers().len() >= service.voters
            {
                let deadline = Instant::now() + Duration::from_secs(2);
                if let Err(error) = cluster.commit(&service.offsets_log, deadline).await {
                    tracing::warn!(%error.message, "cannot create the offsets log");
                }
            }
        }
    }
}

/// The most preferred-leader elections the controller asks for per tick.
const PREFERRED_ELECTIONS_MAX: usize = 100;

/// Gives each partition back to its preferred replica (the first) once that replica is
/// alive and in sync again, as Kafka's automatic leader rebalance does: after a restart
/// or a failover, leadership spreads as placement meant it to.
async fn elect_preferred(cluster: &Cluster) {
    let image = cluster.image();
    let alive = image.alive_brokers();
    let elections: Vec<Command> = image
        .topics
        .iter()
        .flat_map(|(name, topic)| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, partition)| {
                    partition.replicas.first().is_some_and(|&preferred| {
                        partition.leader.is_some()
                            && partition.leader != Some(preferred)
                            && partition.isr.contains(&preferred)
                            && alive.contains(&preferred)
                    })
                })
                .map(move |(index, _)| Command::ElectLeader {
                    topic: name.clone(),
                    topic_id: topic.id,
                    partition: index as u32,
                    unclean: false,
                })
        })
        .take(PREFERRED_ELECTIONS_MAX)
        .collect();
    for command in elections {
        let deadline = Instant::now() + Duration::from_secs(2);
        match cluster.commit(&command, deadline).await {
            Ok((_, Outcome::Refused { message, .. })) => {
                tracing::debug!(?command, %message, "preferred leader election refused");
            }
            Ok(_) => tracing::info!(?command, "preferred leader elected"),
            Err(error) => tracing::warn!(%error.message, "cannot elect a preferred leader"),
        }
    }
}

/// Ticks every `interval`; a late tick delays the next instead of bunching them up.
fn ticker(interval: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next tick; false once `stop` fires.
async fn next_tick(ticks: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        _ = ticks.tick() => true,
    }
}
