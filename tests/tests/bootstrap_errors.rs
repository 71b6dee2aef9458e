//! The client reports a mistyped bootstrap address as what it is: an address without a
//! port says the port is missing, and a host that does not resolve says the name did not
//! resolve, rather than a generic connection error. (The CLI checks `--bootstrap` before
//! it builds a client: cli_flags.rs.)

use strata_client::{Admin, ClientConfig, Error};
use strata_tests::bounded;

/// Under `.invalid`, which never resolves (RFC 6761).
const UNRESOLVABLE: &str = "nohost.invalid:9400";

#[test]
fn the_client_refuses_an_address_without_a_port() {
    let error = Admin::new(ClientConfig::new("127.0.0.1")).expect_err("no port");
    assert!(
        matches!(&error, Error::InvalidBootstrap { address, .. } if address == "127.0.0.1"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "bootstrap address '127.0.0.1' has no port; use host:port"
    );
}

#[tokio::test]
async fn the_client_reports_an_unresolvable_host_as_such() {
    let admin = Admin::new(ClientConfig::new(UNRESOLVABLE)).expect("well-formed address");
    let error = bounded(admin.list_topics())
        .await
        .expect_err("cannot connect");
    assert!(
        matches!(&error, Error::Resolve { host, .. } if host == "nohost.invalid"),
        "{error:?}"
    );
    assert!(error.is_retriable(), "a name may resolve later");
}
