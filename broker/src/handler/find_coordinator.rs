//! FindCoordinator: every group is coordinated by this broker while it runs alone.

use strata_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::Reply;
use super::groups::check_group_id;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: &FindCoordinatorRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    let (host, port) = broker.config.advertised();
    FindCoordinatorResponse {
        node_id: broker.config.node_id,
        host,
        port,
    }
    .into()
}
