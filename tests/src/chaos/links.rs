//! The nemeses on the links between brokers, through the cluster's link proxies: a
//! broker cut off both ways (with the controller as target, the majority/minority split
//! of three brokers), a broker whose messages to the others are lost while it still
//! hears them (an asymmetric cut), and a broker whose links are slow. Clients reach
//! every broker throughout: a leader cut off keeps being sent writes.

use std::time::Duration;

use super::error::ChaosError;
use super::nemesis::{Nemesis, Site};

/// The delay a slow broker's links add to every chunk, each way: a few replica fetch
/// round trips per second, well inside the session timeout and the ISR's lag bound, so
/// the broker stays in the ISR and every `acks = all` write waits for it.
const SLOW_LINK_DELAY: Duration = Duration::from_millis(200);

/// The broker cut off from the others both ways; healed by joining it again.
#[derive(Debug)]
pub struct Isolate;

impl Nemesis for Isolate {
    fn name(&self) -> &'static str {
        "isolate"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.isolate(site.node);
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.rejoin(site.node);
        Ok(None)
    }
}

/// What the broker sends to the others is discarded, what they send reaches it: it
/// hears the controller and its followers' fetches, and nobody hears its answers.
/// Healed by resetting its links, whose streams the lost bytes broke.
#[derive(Debug)]
pub struct Silence;

impl Nemesis for Silence {
    fn name(&self) -> &'static str {
        "silence"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.silence(site.node);
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.rejoin(site.node);
        Ok(None)
    }
}

/// Every chunk on the broker's links to the others delayed by [`SLOW_LINK_DELAY`].
#[derive(Debug)]
pub struct SlowLinks;

impl Nemesis for SlowLinks {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.slow_down(site.node, SLOW_LINK_DELAY);
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.rejoin(site.node);
        Ok(None)
    }
}
