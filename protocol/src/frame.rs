//! Frames and their headers.
//!
//! ```text
//! frame    := length:u32 payload[length]          length excludes itself
//! request  := api_key:u16 api_version:u16 correlation_id:u32 client_id:string body
//! response := correlation_id:u32 error_code:u16 ( body        if error_code = 0
//!                                               | message:string  otherwise )
//! ```
//!
//! A non-zero `error_code` in the response header means the whole request failed (it
//! could not be parsed, its API or version is unsupported, ...); the message says why.
//! Per-topic and per-partition failures are reported inside the body instead.
//! Responses on a connection come back in request order.

use bytes::Bytes;

use crate::api::{Request, Response};
use crate::error::{DecodeError, ErrorCode};
use crate::wire::{ByteCounter, Reader, Sink, Wire, wire_struct};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Smallest request payload: a header with an empty client id.
pub const REQUEST_HEADER_BYTES_MIN: usize = 10;
/// Bytes of a response header: the correlation id and the error code.
pub const RESPONSE_HEADER_BYTES: usize = 6;

wire_struct! {
    /// Precedes every request body.
    pub struct RequestHeader {
        /// Which API; see [`crate::ApiKey`].
        pub api_key: u16,
        /// Which version of the API's body follows.
        pub api_version: u16,
        /// Echoed in the response.
        pub correlation_id: u32,
        /// Names the client in broker logs and metrics.
        pub client_id: String,
    }
}

wire_struct! {
    /// Precedes every response body.
    pub struct ResponseHeader {
        /// The request's correlation id.
        pub correlation_id: u32,
        /// `None`, or why the whole request failed (then a message follows, not a body).
        pub error_code: ErrorCode,
    }
}

/// Encodes one frame: a length placeholder, whatever `body` writes, then the real length.
/// Returns the payload length.
///
/// # Panics
/// If the payload reaches 4 GiB. A broker measures each response with
/// [`response_payload_bytes`] and refuses one that large instead of encoding it.
pub fn write_frame<S: Sink + ?Sized>(out: &mut S, body: impl FnOnce(&mut S)) -> usize {
    let start = out.written();
    0u32.encode(out);
    body(out);
    let length = out.written() - start - LENGTH_PREFIX_BYTES;
    out.patch_u32(start, u32::try_from(length).expect("frame under 4 GiB"));
    length
}

/// Encodes a request frame. Returns the payload length.
pub fn encode_request<S: Sink + ?Sized>(
    out: &mut S,
    header: &RequestHeader,
    request: &Request,
) -> usize {
    write_frame(out, |out| {
        header.encode(out);
        request.encode_body(header.api_version, out);
    })
}

/// Bytes of the payload [`encode_response`] would write for `response` at
/// `api_version`, counted without encoding it anywhere.
pub fn response_payload_bytes(response: &Response, api_version: u16) -> usize {
    let mut counter = ByteCounter::default();
    response.encode_body(api_version, &mut counter);
    counter.written().saturating_add(RESPONSE_HEADER_BYTES)
}

/// Encodes a successful response frame, its body at `api_version` (the request's).
/// Returns the payload length.
///
/// # Panics
/// If the payload reaches 4 GiB; see [`write_frame`].
pub fn encode_response<S: Sink + ?Sized>(
    out: &mut S,
    correlation_id: u32,
    api_version: u16,
    response: &Response,
) -> usize {
    write_frame(out, |out| {
        ResponseHeader {
            correlation_id,
            error_code: ErrorCode::None,
        }
        .encode(out);
        response.encode_body(api_version, out);
    })
}

/// Encodes a response frame saying the whole request failed. The message is cut to the
/// longest string the protocol carries. Returns the payload length.
///
/// # Panics
/// If `error_code` is [`ErrorCode::None`].
pub fn encode_error_response<S: Sink + ?Sized>(
    out: &mut S,
    correlation_id: u32,
    error_code: ErrorCode,
    message: &str,
) -> usize {
    assert!(!error_code.is_ok(), "an error response needs an error");
    write_frame(out, |out| {
        ResponseHeader {
            correlation_id,
            error_code,
        }
        .encode(out);
        crate::wire::encode_str(message, out);
    })
}

/// Decodes a request header from a frame payload. Returns the header and the body that
/// follows it, sharing the payload's memory.
///
/// # Errors
/// A [`DecodeError`] if the header is malformed.
pub fn decode_request_header(payload: &Bytes) -> Result<(RequestHeader, Bytes), DecodeError> {
    let mut reader = Reader::new(payload);
    let header = RequestHeader::decode(&mut reader)?;
    Ok((header, reader.take_rest()))
}

/// Decodes a whole request frame payload.
///
/// # Errors
/// The header on its own if only the body failed, so the caller can still answer with
/// the right correlation id; `None` if even the header failed.
pub fn decode_request(
    payload: &Bytes,
) -> Result<(RequestHeader, Request), (Option<RequestHeader>, DecodeError)> {
    let (header, body) = decode_request_header(payload).map_err(|error| (None, error))?;
    match Request::decode(header.api_key, header.api_version, &body) {
        Ok(request) => Ok((header, request)),
        Err(error) => Err((Some(header), error)),
    }
}

/// A response as a client sees it: the body, or the request-level error.
pub type ResponseResult = Result<Response, (ErrorCode, String)>;

/// Decodes a response frame payload for a request of the given API and version.
///
/// # Errors
/// A [`DecodeError`] if the frame is malformed.
pub fn decode_response(
    payload: &Bytes,
    api_key: u16,
    api_version: u16,
) -> Result<(u32, ResponseResult), DecodeError> {
    let mut reader = Reader::new(payload);
    let header = ResponseHeader::decode(&mut reader)?;
    if !header.error_code.is_ok() {
        let message = String::decode(&mut reader)?;
        reader.finish()?;
        return Ok((header.correlation_id, Err((header.error_code, message))));
    }
    let body = reader.take_rest();
    let response = Response::decode(api_key, api_version, &body)?;
    Ok((header.correlation_id, Ok(response)))
}

/// Reads the correlation id at the start of a response payload, so a client can match
/// it to its request before decoding the body.
pub fn response_correlation_id(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}
