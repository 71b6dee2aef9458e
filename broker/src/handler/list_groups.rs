//! ListGroups: the groups this broker coordinates, optionally only those in some states.
//! A filter names at most `request_groups_max` states.

use strata_protocol::messages::{ListGroupsRequest, ListGroupsResponse, ListedGroup};

use super::groups::not_coordinated;
use super::{Reply, limits};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: &ListGroupsRequest) -> Reply {
    let states = request.states_filter.len();
    if let Err(refusal) = limits::check_group_count(&broker.config, states, "group states") {
        return refusal;
    }
    ListGroupsResponse {
        groups: broker
            .groups
            .list()
            .into_iter()
            .filter(|group| not_coordinated(broker, &group.group_id).is_none())
            .filter(|group| {
                request.states_filter.is_empty()
                    || request
                        .states_filter
                        .iter()
                        .any(|state| state.eq_ignore_ascii_case(group.state.name()))
            })
            .map(|group| ListedGroup {
                group_id: group.group_id,
                state: group.state.name().to_owned(),
                member_count: group.member_count as u32,
            })
            .collect(),
    }
    .into()
}
