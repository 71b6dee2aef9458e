//! Answers peers on the cluster listener: Raft RPCs go to openraft, forwarded proposals
//! and leader calls to this node's [`Quorum`](super::Quorum).
//!
//! One task per connection, at most [`CONNECTIONS_MAX`] at once, reads a request,
//! answers it, and reads the next. A frame over the limit or a body that does not decode
//! closes that connection only. Connections come from the listener itself, or from the
//! broker's cluster listener, which hands the quorum the connections that are not
//! partition replication's ([`Incoming`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;

use super::network::frame;
use super::quorum::Inner;
use super::types::{Forwarded, Request, Response};

/// The longest a forwarded call may ask the leader to wait.
const FORWARDED_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// The pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Connections served at once. Each voter opens two to a peer (openraft's RPCs and the
/// forwarded calls), so five voters need ten; the rest bounds what a stray client of the
/// cluster port can hold (each connection buffers up to one 64 MiB frame).
const CONNECTIONS_MAX: usize = 32;

/// Where the quorum's connections come from.
#[derive(Debug)]
pub enum Incoming {
    /// A listener of the quorum's own.
    Listener(TcpListener),
    /// Connections accepted elsewhere, each with the bytes already read from it: the
    /// broker's cluster listener, shared with partition replication, reads a connection's
    /// first bytes to tell whose it is. Ends when the sender is dropped.
    Streams(mpsc::Receiver<(TcpStream, BytesMut)>),
}

impl From<TcpListener> for Incoming {
    fn from(listener: TcpListener) -> Self {
        Incoming::Listener(listener)
    }
}

impl Incoming {
    /// The next connection; `None` once a stream source has ended.
    async fn next(&mut self) -> Option<std::io::Result<(TcpStream, BytesMut)>> {
        match self {
            Incoming::Listener(listener) => Some(
                listener
                    .accept()
                    .await
                    .map(|(stream, _)| (stream, BytesMut::new())),
            ),
            Incoming::Streams(streams) => streams.recv().await.map(Ok),
        }
    }
}

/// Serves the peers that `incoming` brings until the quorum shuts down.
pub(crate) async fn serve(mut incoming: Incoming, quorum: Arc<Inner>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            () = quorum.cancel.cancelled() => return,
            accepted = incoming.next() => accepted,
        };
        match accepted {
            None => return,
            Some(Ok((stream, read))) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    let peer = stream.peer_addr().ok();
                    tracing::warn!(
                        ?peer,
                        limit = CONNECTIONS_MAX,
                        "too many metadata quorum connections; closing a new one"
                    );
                    continue;
                };
                let serving = serve_connection(stream, read, quorum.clone());
                quorum.tasks.spawn(async move {
                    serving.await;
                    drop(slot);
                });
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "metadata quorum listener cannot accept");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Answers one peer's requests, one at a time, until it hangs up or sends a bad frame.
/// `read` holds the bytes already read from the connection.
async fn serve_connection(stream: TcpStream, read: BytesMut, quorum: Arc<Inner>) {
    let peer = stream.peer_addr().ok();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY on a metadata quorum connection");
    }
    let mut connection = frame(stream);
    *connection.read_buffer_mut() = read;
    loop {
        let frame = tokio::select! {
            () = quorum.cancel.cancelled() => return,
            frame = connection.next() => frame,
        };
        let request: Request = match frame
            .map(|frame| frame.map(|body| serde_json::from_slice(&body)))
        {
            None => return,
            Some(Ok(Ok(request))) => request,
            Some(Ok(Err(error))) => {
                tracing::warn!(?peer, %error, "closing a metadata quorum connection: undecodable request");
                return;
            }
            // A peer that dropped the connection (it timed a call out, or restarted) is
            // routine; a frame over the limit is not.
            Some(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(?peer, %error, "closing a metadata quorum connection: bad frame");
                return;
            }
            Some(Err(error)) => {
                tracing::debug!(?peer, %error, "a metadata quorum connection ended");
                return;
            }
        };
        let response = tokio::select! {
            () = quorum.cancel.cancelled() => return,
            response = answer(&quorum, request) => response,
        };
        let body = match serde_json::to_vec(&response) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "cannot encode a metadata quorum response");
                return;
            }
        };
        if connection.send(Bytes::from(body)).await.is_err() {
            return;
        }
    }
}

/// The response to `request`.
async fn answer(quorum: &Inner, request: Request) -> Response {
    match request {
        Request::AppendEntries(rpc) => {
            Response::AppendEntries(quorum.raft.append_entries(rpc).await)
        }
        Request::Vote(rpc) => Response::Vote(quorum.raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => {
            Response::InstallSnapshot(quorum.raft.install_snapshot(rpc).await)
        }
        Request::Propose {
            command,
            timeout_ms,
        } => {
            let answered = timeout(bounded(timeout_ms), quorum.propose_here(command)).await;
            Response::Propose(answered.unwrap_or_else(|_| timed_out()))
        }
        Request::CallLeader {
            from,
            request,
            timeout_ms,
        } => {
            let answered = timeout(bounded(timeout_ms), quorum.call_here(from, request)).await;
            Response::CallLeader(answered.unwrap_or_else(|_| timed_out()))
        }
    }
}

/// A caller's timeout, capped.
fn bounded(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms).min(FORWARDED_TIMEOUT_MAX)
}

/// The answer to a forwarded call that ran out of time here.
fn timed_out<T>() -> Forwarded<T> {
    Forwarded::Unavailable("the leader did not finish before the caller's deadline".to_string())
}
