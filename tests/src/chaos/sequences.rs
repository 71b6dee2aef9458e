//! The multi-step faults, composed of kills, power cuts and link cuts, each
//! step waiting (bounded) for the cluster to react to the one before, as the brokers in
//! reach see it:
//! - last replica standing (scenario 6): the ISR shrinks to the leader alone, the leader
//!   loses power, the followers come back first. The partition must end up unavailable
//!   or intact, never silently truncated. Every broker is a voter of the metadata
//!   quorum, so the followers cannot simply be killed (two of three gone, no ISR change
//!   can commit): their links to the leader are cut instead, the way they dial it (their
//!   fetches and, if it is the controller, their heartbeats), while the leader and the
//!   controller still reach them.
//! - divergent tails (scenario 7): two leader changes in quick succession, each old
//!   leader cut off while clients still send it writes it cannot commit.
//! - rolling restart (scenario 8): every broker shut down with `SIGTERM` and restarted
//!   in turn, under load.
//!
//! A step that does not see the reaction it waits for goes on anyway, and says so in
//! the fault's description in the history.

use std::time::Duration;

use super::error::ChaosError;
use super::faults::PowerLoss;
use super::nemesis::{Nemesis, Site};
use super::node::NodeSpec;
use super::roles::PartitionView;

/// How long a step waits for the controller to react: a fenced broker (after the session
/// timeout), an ISR shrink, an election.
const REACTION_WAIT: Duration = Duration::from_secs(15);
/// How long a leader may take to drop followers that stopped fetching from the ISR:
/// past `replica_lag_max_ms` (5 s by default) and the controller's commit.
const SHRINK_WAIT: Duration = Duration::from_secs(20);
/// How long a restarted broker may take to be back in every partition's ISR.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

/// The view of `partition` among `views`.
fn view_of(views: &[Option<PartitionView>], partition: u32) -> Option<&PartitionView> {
    views.get(usize::try_from(partition).ok()?)?.as_ref()
}

/// "ISR [1, 2]" (node ids) or "no view", for descriptions.
fn in_sync_named(view: Option<&PartitionView>) -> String {
    view.map_or("no view".to_owned(), |view| {
        let ids: Vec<usize> = view.in_sync.iter().map(|node| node + 1).collect();
        format!("ISR {ids:?}")
    })
}

/// "led by broker N at epoch E" or "no leader", for descriptions.
fn leader_named(view: Option<&PartitionView>) -> String {
    match view {
        Some(PartitionView {
            leader: Some(leader),
            leader_epoch,
            ..
        }) => format!("led by broker {} at epoch {leader_epoch}", leader + 1),
        _ => "no leader".to_owned(),
    }
}

/// Scenario 6: cut the links the followers dial the leader on, so that they stop
/// fetching and the leader shrinks the ISR to itself; cut its power (every broker runs
/// as `strata-recorded-broker`); heal by joining the followers' links again, waiting for
/// the partition to be led by one of them (or not), then restarting the old leader.
#[derive(Debug, Default)]
pub struct LastReplicaStanding {
    power: PowerLoss,
}

impl LastReplicaStanding {
    fn followers(site: &Site<'_>) -> Vec<usize> {
        (0..site.cluster.len())
            .filter(|&node| node != site.node)
            .collect()
    }
}

impl Nemesis for LastReplicaStanding {
    fn name(&self) -> &'static str {
        "last-replica-standing"
    }

    fn prepare(&mut self, spec: &mut NodeSpec) -> Result<(), ChaosError> {
        self.power.prepare(spec)
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let (leader, partition) = (site.node, site.partition);
        for follower in Self::followers(site) {
            site.cluster.link(follower, leader).cut();
        }
        let every = site.cluster.answering();
        let alone = |view: &PartitionView| view.in_sync == [leader];
        site.roles.wait_for(
            &every,
            SHRINK_WAIT,
            || site.stopping(),
            |views| view_of(views, partition).is_some_and(alone),
        );
        if site.stopping() {
            return Ok(None);
        }
        let view = site.roles.view(partition, &every);
        let dropped = self.power.cut_power(site.cluster, leader)?;
        Ok(Some(format!(
            "followers' links to it cut, {}; its power cut, {dropped} bytes dropped",
            in_sync_named(view.as_ref())
        )))
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let (leader, partition) = (site.node, site.partition);
        let followers = Self::followers(site);
        for &follower in &followers {
            site.cluster.link(follower, leader).heal();
        }
        if site.stopping() {
            return Ok(None);
        }
        let moved = |view: &PartitionView| view.leader.is_some_and(|node| node != leader);
        site.roles.wait_for(
            &followers,
            REACTION_WAIT,
            || site.stopping(),
            |views| view_of(views, partition).is_some_and(moved),
        );
        let without_old_leader = site.roles.view(partition, &followers);
        site.cluster.restart(leader)?;
        Ok(Some(format!(
            "followers joined again: {}; then broker {} back",
            leader_named(without_old_leader.as_ref()),
            leader + 1
        )))
    }
}

/// Scenario 7: cut the leader off from the other brokers (clients still reach it, so it
/// takes writes it cannot commit); once another broker leads, join the first again and
/// at once cut the new leader off, so a third election follows with two divergent,
/// uncommitted tails to truncate. Healed by joining the second again.
#[derive(Debug, Default)]
pub struct DivergentTails {
    /// The broker cut off at the end of the injection.
    cut_off: Option<usize>,
}

impl DivergentTails {
    /// Waits until brokers other than `away` see `partition` led by someone other than
    /// `away`; returns that leader's view.
    fn new_leader(site: &Site<'_>, away: usize) -> Option<PartitionView> {
        let others: Vec<usize> = site
            .cluster
            .answering()
            .into_iter()
            .filter(|&node| node != away)
            .collect();
        let partition = site.partition;
        let moved = |view: &PartitionView| view.leader.is_some_and(|leader| leader != away);
        site.roles.wait_for(
            &others,
            REACTION_WAIT,
            || site.stopping(),
            |views| view_of(views, partition).is_some_and(moved),
        );
        site.roles.view(partition, &others).filter(moved)
    }
}

impl Nemesis for DivergentTails {
    fn name(&self) -> &'static str {
        "divergent-tails"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let first = site.node;
        site.cluster.isolate(first);
        self.cut_off = Some(first);
        let Some(second) = Self::new_leader(site, first) else {
            return Ok(Some(format!(
                "broker {} cut off, no other leader within {REACTION_WAIT:?}",
                first + 1
            )));
        };
        if site.stopping() {
            return Ok(None);
        }
        let second_leader = second.leader.expect("a new leader");
        // The first joins before the second is cut: a link is cut if either end is.
        site.cluster.rejoin(first);
        site.cluster.isolate(second_leader);
        self.cut_off = Some(second_leader);
        let third = Self::new_leader(site, second_leader);
        Ok(Some(format!(
            "broker {} cut off, then {}; broker {} back and broker {} cut off, then {}",
            first + 1,
            leader_named(Some(&second)),
            first + 1,
            second_leader + 1,
            leader_named(third.as_ref())
        )))
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        if let Some(node) = self.cut_off.take() {
            site.cluster.rejoin(node);
        }
        Ok(None)
    }
}

/// Scenario 8: every broker in turn, from the target on, shut down with `SIGTERM` (a
/// controlled shutdown moves its leaderships first), restarted, and waited for until it
/// is back in every partition's ISR. The injection is the whole roll; the heal is empty.
#[derive(Debug)]
pub struct RollingRestart;

impl Nemesis for RollingRestart {
    fn name(&self) -> &'static str {
        "rolling-restart"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let count = site.cluster.len();
        let mut steps = Vec::new();
        for turn in 0..count {
            if site.stopping() {
                break;
            }
            let node = (site.node + turn) % count;
            let clean = site.cluster.node(node).terminate();
            site.cluster.restart(node)?;
            let every = site.cluster.answering();
            let back = site.roles.wait_for(
                &every,
                CATCH_UP_WAIT,
                || site.stopping(),
                |views| {
                    views.iter().all(|view| {
                        view.as_ref()
                            .is_some_and(|view| view.in_sync.contains(&node))
                    })
                },
            );
            steps.push(format!(
                "broker {} {}, {}",
                node + 1,
                if clean {
                    "shut down"
                } else {
                    "killed after its shutdown hung"
                },
                if back {
                    "back in sync"
                } else {
                    "not back in sync in time"
                }
            ));
        }
        Ok(Some(steps.join(", ")))
    }

    fn heal(&mut self, _site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        Ok(None)
    }
}
