//! One client connection: reads frames, runs requests, writes responses in request order.
//!
//! ```text
//!  socket ─▶ reader: decode, run the in-order part ──▶ bounded queue ─▶ writer ─▶ socket
//!                        │ (appends, admin, metadata)          ▲ replies awaited in order
//!                        └─ spawn the waiting part ────────────┘ (long-poll, acks=all)
//! ```
//!
//! Every request's state-changing part runs on the reader, one request at a time in
//! arrival order, so pipelined produces to a partition are appended in the order they
//! were sent (also with `acks = none`, which has no response to order by). Only waiting
//! runs in a task of its own, so a parked fetch does not hold up later requests, only
//! their responses. The queue's capacity is `connection_in_flight_requests_max`: when it is
//! full the reader stops reading, and TCP pushes back on the client. A panic in a waiting
//! task fails that request (`Unknown`) and nothing else. A framing error (oversized length
//! prefix, unreadable header) is answered where a correlation id can be read, and then
//! closes this connection only.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use strata_protocol::codec::{FrameCodec, FrameError};
use strata_protocol::frame::{self, RequestHeader};
use strata_protocol::wire::VectoredBuf;
use strata_protocol::{ApiKey, ErrorCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::handler::{self, Reply, Started};
use crate::metrics;
use crate::send;

/// A reply on its way to the writer.
enum Pending {
    /// A reply already known.
    Ready { correlation_id: u32, reply: Reply },
    /// A request waiting in its own task.
    Waiting {
        correlation_id: u32,
        task: JoinHandle<Reply>,
    },
    /// An error decided by the reader; `close` ends the connection after it is sent.
    Failed {
        correlation_id: u32,
        code: ErrorCode,
        message: String,
        close: bool,
    },
}

/// Serves one connection until the client closes it, it idles out, a framing error
/// occurs, or `shutdown` fires. In-flight requests are answered before it returns.
pub async fn serve(stream: TcpStream, broker: Arc<Broker>, shutdown: CancellationToken) {
    let peer = stream
        .peer_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let (read, write) = stream.into_split();
    let (queue, pending) = mpsc::channel(broker.config.connection_in_flight_requests_max);
    let writer = tokio::spawn(write_replies(write, pending));
    let mut frames = FramedRead::new(read, FrameCodec::new(broker.config.frame_bytes_max));
    let idle = broker.config.connection_idle();
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => break,
            next = tokio::time::timeout(idle, frames.next()) => next,
        };
        let pending = match next {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(payload))) => dispatch(&broker, payload, &peer).await,
            Ok(Some(Err(error))) => match framing_failure(&error, frames.read_buffer()) {
                Some(failed) => failed,
                None => {
                    tracing::debug!(%peer, %error, "closing connection after a framing error");
                    break;
                }
            },
        };
        let closes = matches!(pending, Pending::Failed { close: true, .. });
        if queue.send(pending).await.is_err() || closes {
            break;
        }
    }
    drop(queue);
    if let Err(error) = writer.await {
        tracing::warn!(%peer, %error, "connection writer failed");
    }
}

/// Reads the correlation id at bytes 4..8 of a request payload, present once the
/// payload has 8 bytes, before the rest of the header can be trusted.
fn correlation_id(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?))
}

/// Answers an oversized frame if its correlation id already arrived.
fn framing_failure(error: &FrameError, buffered: &BytesMut) -> Option<Pending> {
    let FrameError::TooLarge { length, max } = error else {
        return None;
    };
    let correlation_id = correlation_id(buffered.get(frame::LENGTH_PREFIX_BYTES..)?)?;
    metrics::record_error(ErrorCode::FrameTooLarge);
    Some(Pending::Failed {
        correlation_id,
        code: ErrorCode::FrameTooLarge,
        message: format!(
            "request frame of {length} bytes exceeds frame_bytes_max {max}; the connection is closed"
        ),
        close: true,
    })
}

/// Runs a request's in-order part here, on the reader, and leaves only its waiting to a
/// task of its own.
async fn dispatch(broker: &Arc<Broker>, payload: Bytes, peer: &str) -> Pending {
    let received = Instant::now();
    match frame::decode_request(&payload) {
        Ok((header, request)) => {
            let RequestHeader {
                correlation_id,
                api_key,
                client_id,
                ..
            } = header;
            let api = ApiKey::from_u16(api_key);
            let client = handler::Client {
                id: &client_id,
                address: peer,
            };
            match handler::start(broker, request, &client).await {
                Started::Ready(reply) => {
                    api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                    Pending::Ready {
                        correlation_id,
                        reply,
                    }
                }
                Started::Waiting(rest) => {
                    let task = tokio::spawn(async move {
                        let reply = rest.await;
                        api.inspect(|api| metrics::record_request(*api, received.elapsed()));
                        reply
                    });
                    Pending::Waiting {
                        correlation_id,
                        task,
                    }
                }
            }
        }
        // The header decoded, so framing is intact: answer and keep the connection.
        Err((Some(header), error)) => {
            metrics::record_error(error.error_code());
            Pending::Failed {
                correlation_id: header.correlation_id,
                code: error.error_code(),
                message: error.to_string(),
                close: false,
            }
        }
        // The header itself is unreadable: answer if its correlation id is there, then close.
        Err((None, error)) => {
            metrics::record_error(ErrorCode::InvalidRequest);
            Pending::Failed {
                correlation_id: correlation_id(&payload).unwrap_or(0),
                code: ErrorCode::InvalidRequest,
                message: format!("unreadable request header: {error}; the connection is closed"),
                close: true,
            }
        }
    }
}

async fn write_replies(mut socket: OwnedWriteHalf, mut pending: mpsc::Receiver<Pending>) {
    while let Some(next) = pending.recv().await {
        let (correlation_id, reply) = match next {
            Pending::Ready {
                correlation_id,
                reply,
            } => (correlation_id, reply),
            Pending::Waiting {
                correlation_id,
                task,
            } => match task.await {
                Ok(reply) => (correlation_id, reply),
                Err(error) => {
                    tracing::error!(%error, "request handler failed");
                    (
                        correlation_id,
                        Reply::Error(
                            ErrorCode::Unknown,
                            "the request handler failed; see the broker log".into(),
                        ),
                    )
                }
            },
            Pending::Failed {
                correlation_id,
                code,
                message,
                ..
            } => (correlation_id, Reply::Error(code, message)),
        };
        let mut out = VectoredBuf::new();
        let files = match &reply {
            Reply::Response(response) => {
                frame::encode_response(&mut out, correlation_id, response);
                &[][..]
            }
            Reply::Records(response, files) => {
                frame::encode_response(&mut out, correlation_id, response);
                files.as_slice()
            }
            Reply::Error(code, message) => {
                metrics::record_error(*code);
                frame::encode_error_response(&mut out, correlation_id, *code, message);
                &[][..]
            }
            Reply::Nothing => continue,
        };
        match send::write_chunks(&mut socket, out.into_chunks(), files).await {
            Ok(0) => {}
            Ok(by_sendfile) => metrics::record_sendfile(by_sendfile),
            Err(error) => {
                tracing::debug!(%error, "client went away while writing");
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}
