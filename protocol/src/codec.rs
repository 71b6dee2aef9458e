//! A tokio-util [`Decoder`] and [`Encoder`] for length-prefixed frames.
//!
//! The decoder checks the length prefix against `frame_bytes_max` before it reserves any
//! buffer space, so a peer cannot make it allocate more than the limit by announcing a
//! huge frame. An `Err` from either side means the connection must be closed.
//!
//! [`FrameCodec::encode_request_chunks`] encodes into a [`VectoredBuf`] instead of one
//! buffer: record batches stay shared [`Bytes`] rather than being copied, and
//! [`write_chunks`] sends the chunks with vectored writes (the broker does the same for
//! responses).

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use crate::api::{Request, Response};
use crate::error::ErrorCode;
use crate::frame::{self, LENGTH_PREFIX_BYTES, RequestHeader};
use crate::wire::VectoredBuf;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A frame's length is above the limit.
    #[error("frame of {length} bytes exceeds frame_bytes_max {max}")]
    TooLarge {
        /// The announced or encoded length.
        length: usize,
        /// The limit.
        max: usize,
    },
}

/// Splits a byte stream into frame payloads and writes frames. Holds only its limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    frame_bytes_max: usize,
}

impl FrameCodec {
    /// A codec that refuses frames whose payload exceeds `frame_bytes_max` bytes.
    pub fn new(frame_bytes_max: usize) -> Self {
        Self { frame_bytes_max }
    }

    /// The limit.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Reads the length prefix at the start of `src`: the payload length of the frame that
    /// starts there, checked against the limit, or `None` until 4 bytes are there. Lets a
    /// reader reserve memory for a frame before it buffers the payload.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the announced length exceeds the limit.
    pub fn decode_length(&self, src: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_BYTES) else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
        self.check(length)?;
        Ok(Some(length))
    }

    fn check(&self, length: usize) -> Result<(), FrameError> {
        if length > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                length,
                max: self.frame_bytes_max,
            });
        }
        Ok(())
    }

    fn encode_checked(
        &self,
        dst: &mut BytesMut,
        encode: impl FnOnce(&mut BytesMut) -> usize,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        let length = encode(dst);
        if let Err(error) = self.check(length) {
            dst.truncate(start);
            return Err(error);
        }
        Ok(())
    }

    /// Encodes a request frame as chunks for [`write_chunks`], sharing record batches
    /// instead of copying them.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the payload exceeds the limit.
    pub fn encode_request_chunks(
        &self,
        header: &RequestHeader,
        request: &Request,
    ) -> Result<Vec<Bytes>, FrameError> {
        let mut out = VectoredBuf::new();
        self.check(frame::encode_request(&mut out, header, request))?;
        Ok(out.into_chunks())
    }
}

/// Writes `chunks` in order with vectored writes (at most [`IOVECS_MAX`] per call),
/// resuming after partial writes.
///
/// # Errors
/// The writer's error, or [`io::ErrorKind::WriteZero`] if it accepts nothing.
pub async fn write_chunks<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    mut chunks: Vec<Bytes>,
) -> io::Result<()> {
    chunks.retain(|chunk| !chunk.is_empty());
    let mut first = 0;
    while first < chunks.len() {
        let slices: Vec<io::IoSlice<'_>> = chunks[first..]
            .iter()
            .take(IOVECS_MAX)
            .map(|chunk| io::IoSlice::new(chunk))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let chunk = &mut chunks[first];
            if written >= chunk.len() {
                written -= chunk.len();
                first += 1;
            } else {
                chunk.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

/// The most chunks one [`write_chunks`] system call takes (Linux allows 1024).
pub const IOVECS_MAX: usize = 64;

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(length) = self.decode_length(src)? else {
            return Ok(None);
        };
        let total = LENGTH_PREFIX_BYTES + length;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(src.split_to(length).freeze()))
    }
}

/// A request ready to send.
#[derive(Debug)]
pub struct RequestFrame<'a> {
    /// The header.
    pub header: &'a RequestHeader,
    /// The body.
    pub request: &'a Request,
}

impl Encoder<RequestFrame<'_>> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: RequestFrame<'_>, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_checked(dst, |dst| {
            frame::encode_request(dst, item.header, item.request)
        })
    }
}

/// A response ready to send: a body, or a request-level error.
#[derive(Debug)]
pub struct ResponseFrame<'a> {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The request's API version, at which the body is encoded.
    pub api_version: u16,
    /// The body, or the error code and message.
    pub body: Result<&'a Response, (ErrorCode, &'a str)>,
}

impl Encoder<ResponseFrame<'_>> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: ResponseFrame<'_>, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_checked(dst, |dst| match item.body {
            Ok(response) => {
                frame::encode_response(dst, item.correlation_id, item.api_version, response)
            }
            Err((code, message)) => {
                frame::encode_error_response(dst, item.correlation_id, code, message)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_prefix_is_refused_before_reserving() {
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xF0][..]);
        let capacity = src.capacity();
        assert!(matches!(
            codec.decode(&mut src),
            Err(FrameError::TooLarge {
                length: 0xFFFF_FFF0,
                max: 1024
            })
        ));
        assert_eq!(src.capacity(), capacity);
    }

    #[test]
    fn a_length_prefix_is_read_and_checked_alone() {
        let codec = FrameCodec::new(1024);
        assert_eq!(codec.decode_length(&[0, 0, 4]).unwrap(), None);
        assert_eq!(codec.decode_length(&[0, 0, 4, 0, 9]).unwrap(), Some(1024));
        assert!(matches!(
            codec.decode_length(&[0, 0, 4, 1]),
            Err(FrameError::TooLarge {
                length: 1025,
                max: 1024
            })
        ));
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&[0, 0, 0, 3, b'a'][..]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        src.extend_from_slice(b"bc\x00\x00\x00\x00");
        assert_eq!(
            codec.decode(&mut src).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(codec.decode(&mut src).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(codec.decode(&mut src).unwrap(), None);
    }

    #[test]
    fn oversized_outbound_frames_are_refused_and_leave_nothing_behind() {
        let mut codec = FrameCodec::new(8);
        let mut dst = BytesMut::new();
        let header = RequestHeader {
            api_key: 1,
            api_version: 0,
            correlation_id: 1,
            client_id: "a-long-client-id".into(),
        };
        let request = Request::Metadata(crate::messages::MetadataRequest { topics: None });
        let result = codec.encode(
            RequestFrame {
                header: &header,
                request: &request,
            },
            &mut dst,
        );
        assert!(matches!(result, Err(FrameError::TooLarge { .. })));
        assert!(dst.is_empty());
    }
}
