//! ApiVersions: the handshake.

use strata_protocol::api::supported_versions;
use strata_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

pub fn handle(request: &ApiVersionsRequest) -> ApiVersionsResponse {
    tracing::debug!(client = %request.client_software_name, version = %request.client_software_version, "handshake");
    ApiVersionsResponse {
        apis: supported_versions(),
        broker_software_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}
