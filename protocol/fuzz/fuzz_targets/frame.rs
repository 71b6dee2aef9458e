//! Feeds arbitrary bytes through the frame codec and every request and response decoder.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use strata_protocol::ApiKey;
use strata_protocol::codec::FrameCodec;
use strata_protocol::frame;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(1 << 16);
    let mut stream = BytesMut::from(data);
    while let Ok(Some(payload)) = codec.decode(&mut stream) {
        let _ = frame::decode_request(&payload);
    }
    let payload = Bytes::copy_from_slice(data);
    for api in ApiKey::ALL {
        for api_version in api.versions() {
            let _ = frame::decode_response(&payload, *api as u16, api_version);
        }
    }
});
