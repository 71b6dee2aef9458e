//! The cluster listener, shared by the metadata quorum and partition replication.
//!
//! A replica's connection to a partition leader opens with [`REPLICATION_PREAMBLE`] and
//! then speaks the client protocol (length-prefixed frames; the replica-fetch API), so the
//! leader serves it with the same connection code, zero-copy path included, as clients.
//! Every other connection is the quorum's: its frames start with a length prefix, which
//! the preamble can never be (read as a length, it is far above the quorum's frame limit).
//!
//! The first four bytes of each accepted connection are read on a task of their own,
//! with a deadline, so a silent peer holds no one else up.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// What a replica sends first on a connection to a partition leader.
pub const REPLICATION_PREAMBLE: [u8; 4] = *b"SRPL";
/// How long a new connection may take to send its first four bytes.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose first bytes are awaited at once; more are closed at once.
const CLASSIFYING_MAX: usize = 64;
/// The pause after a failed accept (out of descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The connections of the cluster listener, by whom they are for.
#[derive(Debug)]
pub struct Split {
    /// The metadata quorum's, each with the bytes read from it so far.
    pub quorum: mpsc::Receiver<(TcpStream, BytesMut)>,
    /// Replicas', the preamble read.
    pub replication: mpsc::Receiver<TcpStream>,
}

/// Accepts on `listener` until `stop` fires, handing each connection to its user.
pub fn split(listener: TcpListener, stop: CancellationToken) -> Split {
    let (quorum_sender, quorum) = mpsc::channel(CLASSIFYING_MAX);
    let (replication_sender, replication) = mpsc::channel(CLASSIFYING_MAX);
    tokio::spawn(async move {
        let slots = std::sync::Arc::new(Semaphore::new(CLASSIFYING_MAX));
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "the cluster listener cannot accept");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    limit = CLASSIFYING_MAX,
                    "too many new cluster connections at once; closing one"
                );
                continue;
            };
            let (quorum, replication) = (quorum_sender.clone(), replication_sender.clone());
            tokio::spawn(async move {
                let classified =
                    tokio::time::timeout(PREAMBLE_TIMEOUT, classify(stream, &quorum, &replication))
                        .await;
                drop(slot);
                if let Ok(Err(error)) = classified {
                    tracing::debug!(%error, "a new cluster connection ended before it said what it is");
                }
            });
        }
    });
    Split {
        quorum,
        replication,
    }
}

/// Reads the first four bytes of `stream` and hands it on.
async fn classify(
    mut stream: TcpStream,
    quorum: &mpsc::Sender<(TcpStream, BytesMut)>,
    replication: &mpsc::Sender<TcpStream>,
) -> std::io::Result<()> {
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).await?;
    // A closed receiver means the broker is stopping: the connection just closes.
    if first == REPLICATION_PREAMBLE {
        let _ = replication.send(stream).await;
    } else {
        let _ = quorum.send((stream, BytesMut::from(&first[..]))).await;
    }
    Ok(())
}
