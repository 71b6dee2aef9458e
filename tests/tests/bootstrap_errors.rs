//! A mistyped `--bootstrap` is reported as what it is: an address without a port says
//! the port is missing, and a host that does not resolve says the name did not resolve,
//! rather than a generic connection error.

use strata_client::{Admin, ClientConfig, Error};
use strata_tests::{assert_fails, bounded, strata};

/// Under `.invalid`, which never resolves (RFC 6761).
const UNRESOLVABLE: &str = "nohost.invalid:9400";

#[test]
fn an_address_without_a_port_says_the_port_is_missing() {
    for args in [
        &["topic", "list"][..],
        &["consume", "orders", "--max-messages", "1"],
    ] {
        let run = strata(Some("127.0.0.1"), args, b"");
        assert_fails(
            &run,
            1,
            "bootstrap address '127.0.0.1' has no port; use host:port",
        );
    }
}

#[test]
fn an_unresolvable_host_says_the_name_did_not_resolve() {
    let run = strata(Some(UNRESOLVABLE), &["topic", "list"], b"");
    assert_fails(&run, 1, "cannot resolve 'nohost.invalid'");
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
