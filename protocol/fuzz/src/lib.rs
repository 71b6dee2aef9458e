//! What the `request_*` fuzz targets share: one request API's decoder fed arbitrary bytes.

use bytes::{Bytes, BytesMut};
use strata_protocol::wire::Wire;
use strata_protocol::{ApiKey, Request, RequestHeader, frame};

/// Decodes `body` as a request of `api` at every version this build supports, on its own
/// and behind a request header.
///
/// # Panics
/// If the two paths disagree, or if a body that decodes does not decode the same after
/// encoding it again: the fuzzer reports both as crashes.
pub fn request(api: ApiKey, body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    for api_version in api.versions() {
        let decoded = Request::decode(api as u16, api_version, &body);
        let framed = frame::decode_request(&request_payload(api, api_version, &body))
            .map(|(_, request)| request)
            .map_err(|(_, error)| error);
        assert_eq!(framed, decoded, "a header changed how the body decodes");
        if let Ok(request) = decoded {
            let mut encoded = BytesMut::new();
            request.encode_body(api_version, &mut encoded);
            let again = Request::decode(api as u16, api_version, &encoded.freeze());
            assert_eq!(
                again,
                Ok(request),
                "a decoded request did not survive encoding"
            );
        }
    }
}

fn request_payload(api: ApiKey, api_version: u16, body: &Bytes) -> Bytes {
    let mut payload = BytesMut::new();
    RequestHeader {
        api_key: api as u16,
        api_version,
        correlation_id: 1,
        client_id: "fuzz".into(),
    }
    .encode(&mut payload);
    payload.extend_from_slice(body);
    payload.freeze()
}
