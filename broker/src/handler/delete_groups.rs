//! DeleteGroups: each group must have no members; each succeeds or fails on its own. A
//! group named more than once is deleted and answered once.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupResult};

use super::groups::{error_code, invalid_group_id, not_coordinated};
use super::{Reply, limits};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest) -> Reply {
    if let Err(refusal) =
        limits::check_group_count(&broker.config, request.group_ids.len(), "group ids")
    {
        return refusal;
    }
    let groups = limits::distinct(request.group_ids)
        .into_iter()
        .map(|group_id| {
            // Refused before the coordinator, whose error would quote the id whole.
            let outcome = match invalid_group_id(&group_id) {
                Some(message) => Err((ErrorCode::InvalidGroupId, message)),
                None => match not_coordinated(broker, &group_id) {
                    Some(why) => Err((ErrorCode::NotCoordinator, why)),
                    None => broker
                        .groups
                        .delete(&group_id)
                        .map_err(|error| (error_code(&error), error.to_string())),
                },
            };
            let (error_code, error_message) = match outcome {
                Ok(()) => (ErrorCode::None, None),
                Err((code, message)) => (code, Some(message)),
            };
            GroupResult {
                group_id,
                error_code,
                error_message,
            }
        })
        .collect();
    DeleteGroupsResponse { groups }.into()
}
