//! ApiVersions (key 0): the handshake. A client sends it first and uses the intersection
//! of its own and the broker's version ranges for every later request. Version 0 of this
//! API is supported by every broker forever, so a client can always fall back to it.

use crate::wire::wire_struct;

wire_struct! {
    /// Asks the broker which API versions it supports.
    pub struct ApiVersionsRequest {
        /// The client library's name, for broker logs and metrics.
        pub client_software_name: String,
        /// The client library's version.
        pub client_software_version: String,
    }
}

wire_struct! {
    /// One API's supported version range, inclusive.
    pub struct ApiVersionRange {
        /// The API key.
        pub api_key: u16,
        /// The oldest version supported.
        pub min_version: u16,
        /// The newest version supported.
        pub max_version: u16,
    }
}

wire_struct! {
    /// Every API the broker supports.
    pub struct ApiVersionsResponse {
        /// Supported ranges, one per API key.
        pub apis: Vec<ApiVersionRange>,
        /// The broker's software version, for display.
        pub broker_software_version: String,
    }
}
