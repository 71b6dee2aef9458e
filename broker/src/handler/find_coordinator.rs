//! FindCoordinator: the broker that coordinates a group, the leader of the group's
//! partition of the offsets log. The first request in a cluster creates the offsets log,
//! placed over the brokers alive then, as Kafka does.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::Reply;
use super::groups::{check_group_id, coordinator};
use crate::broker::Broker;
use crate::cluster::reconcile::create_offsets_log;
use crate::group::store::OFFSETS_LOG;

pub async fn handle(broker: Arc<Broker>, request: FindCoordinatorRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    if !broker.cluster.image().topics.contains_key(OFFSETS_LOG)
        && let Err(error) = create_offsets_log(&broker).await
    {
        return Reply::Error(error.code, error.message);
    }
    let node = match coordinator(&broker, &request.group_id) {
        Ok(node) => node,
        Err(why) => return Reply::Error(ErrorCode::NotCoordinator, why),
    };
    let image = broker.cluster.image();
    let Some((host, port)) = image
        .brokers
        .get(&node)
        .and_then(|record| record.address.rsplit_once(':'))
        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
    else {
        return Reply::Error(
            ErrorCode::NotCoordinator,
            format!("broker {node} coordinates this group but has no client address"),
        );
    };
    FindCoordinatorResponse {
        node_id: node,
        host,
        port,
    }
    .into()
}
