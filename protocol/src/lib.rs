//! The Strata wire protocol: a pure codec with no I/O, no async runtime and no files
//! (except the optional `codec` module, which bridges frames to tokio streams).
//!
//! ```text
//!  ┌──────────┬────────────────────────────────────────────────────────────┐
//!  │ length   │ payload (length bytes)                                     │
//!  │ u32 BE   │                                                            │
//!  └──────────┴────────────────────────────────────────────────────────────┘
//!  request payload:
//!  ┌─────────┬─────────────┬────────────────┬──────────────────┬──────────┐
//!  │ api_key │ api_version │ correlation_id │ client_id        │ body     │
//!  │ u16     │ u16         │ u32            │ u16 len + UTF-8  │ per API  │
//!  └─────────┴─────────────┴────────────────┴──────────────────┴──────────┘
//!  response payload:
//!  ┌────────────────┬────────────┬─────────────────────────────────────────┐
//!  │ correlation_id │ error_code │ body if error_code = 0, else message    │
//!  │ u32            │ u16        │                                         │
//!  └────────────────┴────────────┴─────────────────────────────────────────┘
//! ```
//!
//! Decoding goes from a received buffer to `(value, bytes consumed)`-style cursors
//! ([`wire::Reader`]); payloads come back as [`bytes::Bytes`] that share the buffer.
//! Encoding writes into a caller-owned [`wire::Sink`]: a `BytesMut`, or a
//! [`wire::VectoredBuf`] that keeps large payloads by reference for `writev`.
//! `docs/protocol.md` is the byte-by-byte specification.
//!
//! # Layout
//! - [`wire`]: primitives, the [`wire::Wire`] trait, varints.
//! - [`frame`]: frame and header encoding and decoding.
//! - [`api`]: API keys, versions, and the [`Request`] / [`Response`] enums.
//! - [`messages`]: one module per API's request and response bodies.
//! - [`batch`]: the record batch format, its builder and its lazy record iterator.
//! - [`limits`]: limits both client and broker check (group ids, topic names, frame
//!   sizes), tied together with `const` assertions.
//! - [`TopicPartition`]: how every crate names and prints a partition.
//! - [`shown`]: a client string as an error message quotes it, cut to a bounded length.
//! - [`error`]: wire [`ErrorCode`]s, [`DecodeError`] and [`BatchError`].
//! - `codec` (feature `codec`): the tokio-util frame codec and a vectored frame writer,
//!   the one place this crate touches async I/O.

pub mod api;
pub mod batch;
#[cfg(feature = "codec")]
pub mod codec;
pub mod error;
pub mod frame;
pub mod limits;
pub mod messages;
mod shown;
mod topic_partition;
pub mod wire;

pub use api::{ApiKey, Request, Response};
pub use error::{BatchError, DecodeError, ErrorCode};
pub use frame::{RequestHeader, ResponseHeader};
pub use shown::{SHOWN_BYTES_MAX, Shown, shown};
pub use topic_partition::TopicPartition;
