//! ListGroups: the groups this broker coordinates, optionally only those in some states.

use strata_protocol::messages::{ListGroupsRequest, ListGroupsResponse, ListedGroup};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: &ListGroupsRequest) -> ListGroupsResponse {
    ListGroupsResponse {
        groups: broker
            .groups
            .list()
            .into_iter()
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
}
