//! DeleteGroups: each group must have no members; each succeeds or fails on its own.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupResult};

use super::groups::error_code;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    let groups = request
        .group_ids
        .iter()
        .map(|group_id| {
            let (error_code, error_message) = match broker.groups.delete(group_id) {
                Ok(()) => (ErrorCode::None, None),
                Err(error) => (error_code(&error), Some(error.to_string())),
            };
            GroupResult {
                group_id: group_id.clone(),
                error_code,
                error_message,
            }
        })
        .collect();
    DeleteGroupsResponse { groups }
}
