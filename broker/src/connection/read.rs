//! Reading request frames off a socket within the broker-wide request budget.
//!
//! A frame's bytes are reserved from the request budget (a [`MemoryBudget`]) once its length prefix is read and
//! before any of its body is buffered. The reservation lives as long as the payload's
//! bytes do (a decoded produce's record batches are slices of the payload), so the budget
//! counts every request byte the broker holds, however long a handler keeps them. While
//! the budget is spent, readers wait without reading, and TCP pushes back on their
//! clients. Outside the budget, a connection keeps one small buffer
//! ([`READ_BUFFER_BYTES`]) for length prefixes and for the start of the next frame.
//!
//! Once a frame's bytes are reserved, a read that brings none of them for
//! `frame_read_timeout_ms` closes the connection, so a client that announces a large
//! frame and stalls holds the budget only that long.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use strata_protocol::codec::{FrameCodec, FrameError};
use strata_protocol::frame::LENGTH_PREFIX_BYTES;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::memory::{MemoryBudget, Reservation};
use super::{Frame, framing_failure};

/// Bytes read from the socket at once while looking for a length prefix: also the most a
/// connection buffers outside the request budget.
pub const READ_BUFFER_BYTES: usize = 8 << 10;

/// A frame payload and its reservation: the owner of the payload's [`Bytes`], so the
/// reservation ends when the last slice of the payload is dropped.
struct Reserved {
    payload: BytesMut,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

/// How long a connection's reader waits for its client.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadTimeouts {
    /// For the next frame's length prefix (`connection_idle_ms_max`).
    pub(super) idle: Duration,
    /// For each read of a frame's body once its bytes are reserved
    /// (`frame_read_timeout_ms`).
    pub(super) frame: Duration,
}

/// A socket read as length-prefixed frames, each payload in memory of its own reserved
/// from the request budget. Owned by one connection's reader task.
#[derive(Debug)]
pub(super) struct FrameReader<R> {
    socket: R,
    codec: FrameCodec,
    memory: MemoryBudget,
    /// Bytes read past the last frame: a partial length prefix, or the start of the next
    /// frame. At most [`READ_BUFFER_BYTES`].
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `frame_bytes_max` payload bytes from `socket` within `memory`.
    pub(super) fn new(socket: R, frame_bytes_max: usize, memory: MemoryBudget) -> Self {
        Self {
            socket,
            codec: FrameCodec::new(frame_bytes_max),
            memory,
            buffer: BytesMut::with_capacity(READ_BUFFER_BYTES),
        }
    }

    /// Waits for the next length prefix and consumes it; `None` at a clean end of stream.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] (the prefix is left in the buffer, for
    /// [`framing_failure`]), or the socket's error.
    async fn read_length(&mut self) -> Result<Option<usize>, FrameError> {
        loop {
            if let Some(length) = self.codec.decode_length(&self.buffer)? {
                self.buffer.advance(LENGTH_PREFIX_BYTES);
                return Ok(Some(length));
            }
            // Fewer than 4 bytes are buffered: room for a whole small frame behind them.
            self.buffer.reserve(READ_BUFFER_BYTES - self.buffer.len());
            if self.socket.read_buf(&mut self.buffer).await? == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Reads a `length`-byte payload into memory of its own, which `reservation` covers:
    /// what is buffered is copied, the rest read straight into it, and nothing past it.
    ///
    /// # Errors
    /// The socket's error; [`io::ErrorKind::UnexpectedEof`] if the stream ends first;
    /// [`io::ErrorKind::TimedOut`] if a read brings nothing for `stall_timeout`.
    async fn read_payload(
        &mut self,
        length: usize,
        reservation: Reservation,
        stall_timeout: Duration,
    ) -> io::Result<Bytes> {
        let mut payload = BytesMut::with_capacity(length);
        let buffered = self.buffer.len().min(length);
        payload.extend_from_slice(&self.buffer[..buffered]);
        self.buffer.advance(buffered);
        while payload.len() < length {
            let missing = (length - payload.len()) as u64;
            let mut socket = (&mut self.socket).take(missing);
            match tokio::time::timeout(stall_timeout, socket.read_buf(&mut payload)).await {
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        Ok(Bytes::from_owner(Reserved {
            payload,
            _reservation: reservation,
        }))
    }
}

/// Reads frames off the socket while the in-order loop runs the ones before them, so
/// receiving a request (a copy out of the socket) overlaps appending the previous one
/// (a copy into the page cache). A frame is read only once `frames` has room for it:
/// at most `READ_AHEAD_FRAMES` wait, besides the one being read and the one running.
/// Returns at end of stream, after the idle limit, when a frame stalls, or at a framing
/// error.
pub(super) async fn read_frames(
    mut socket: FrameReader<impl AsyncRead + Unpin>,
    timeouts: ReadTimeouts,
    frames: mpsc::Sender<Frame>,
    peer: String,
) {
    while let Ok(room) = frames.reserve().await {
        let length = match tokio::time::timeout(timeouts.idle, socket.read_length()).await {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            }
            Ok(Ok(Some(length))) => length,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                match framing_failure(&error, &socket.buffer) {
                    Some(failed) => room.send(Frame::Failed(failed)),
                    None => {
                        tracing::debug!(%peer, %error, "closing connection after a framing error");
                    }
                }
                return;
            }
        };
        // No timeout while the budget is spent: the wait is the broker's, not the client's.
        let reservation = socket.memory.reserve(length).await;
        match socket
            .read_payload(length, reservation, timeouts.frame)
            .await
        {
            Ok(payload) => room.send(Frame::Request {
                payload,
                received: Instant::now(),
            }),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                tracing::debug!(%peer, length, "closing connection: a frame stalled for frame_read_timeout_ms");
                return;
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "connection closed in the middle of a frame");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncWriteExt;

    use super::*;

    fn request_memory(bytes_max: usize) -> MemoryBudget {
        MemoryBudget::new(bytes_max, "strata_request_memory_bytes")
    }

    const TIMEOUTS: ReadTimeouts = ReadTimeouts {
        idle: Duration::from_secs(30),
        frame: Duration::from_secs(30),
    };

    /// A frame: the big-endian length prefix, then `length` bytes of `fill`.
    fn frame(length: usize, fill: u8) -> Vec<u8> {
        let mut frame = u32::try_from(length).unwrap().to_be_bytes().to_vec();
        frame.resize(LENGTH_PREFIX_BYTES + length, fill);
        frame
    }

    async fn next_payload(frames: &mut mpsc::Receiver<Frame>) -> Bytes {
        match frames.recv().await {
            Some(Frame::Request { payload, .. }) => payload,
            Some(Frame::Failed(_)) => panic!("a framing failure instead of a request"),
            None => panic!("the reader stopped"),
        }
    }

    /// Starts a reader over a socket that buffers `socket_bytes`; returns the client end
    /// and the frames read.
    fn reader(
        socket_bytes: usize,
        memory: &MemoryBudget,
        timeouts: ReadTimeouts,
    ) -> (tokio::io::DuplexStream, mpsc::Receiver<Frame>) {
        let (client, socket) = tokio::io::duplex(socket_bytes);
        let (read_ahead, frames) = mpsc::channel(super::super::READ_AHEAD_FRAMES);
        tokio::spawn(read_frames(
            FrameReader::new(socket, 1 << 20, memory.clone()),
            timeouts,
            read_ahead,
            "test".into(),
        ));
        (client, frames)
    }

    // Paused time: the runtime moves the clock on only once every task is blocked.
    #[tokio::test(start_paused = true)]
    async fn the_reader_takes_no_more_off_the_socket_while_its_read_ahead_is_full() {
        const FRAME_BYTES: usize = 64 * 1024;
        const FRAMES: u8 = 4;
        // The socket buffers 1 KiB, far less than a frame: a client gets a frame out only
        // as fast as the reader takes it in.
        let memory = request_memory(1 << 20);
        let (mut client, mut frames) = reader(1024, &memory, TIMEOUTS);
        let written = Arc::new(AtomicUsize::new(0));
        let sender = tokio::spawn({
            let written = Arc::clone(&written);
            async move {
                for fill in 0..FRAMES {
                    client.write_all(&frame(FRAME_BYTES, fill)).await.unwrap();
                    written.fetch_add(1, Ordering::AcqRel);
                }
                client
            }
        });
        // Nothing takes frames out: once the first fills the read-ahead, the reader stops
        // reading, so the client cannot finish writing the second.
        while frames.len() < super::super::READ_AHEAD_FRAMES {
            tokio::task::yield_now().await;
        }
        // With the clock paused, this sleep ends only once the reader and the client are
        // both blocked: a reader that did not stop would have taken the rest by then.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(written.load(Ordering::Acquire), 1);
        // Taking frames out lets the rest through, whole and in order.
        for fill in 0..FRAMES {
            let payload = next_payload(&mut frames).await;
            assert_eq!(payload.len(), FRAME_BYTES);
            assert!(payload.iter().all(|byte| *byte == fill));
        }
        assert_eq!(written.load(Ordering::Acquire), usize::from(FRAMES));
        // The client closing its end stops the reader.
        drop(sender.await.unwrap());
        assert!(frames.recv().await.is_none());
        assert_eq!(memory.bytes_free(), 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_stops_reading_until_a_payload_is_dropped() {
        const FRAME_BYTES: usize = 256 * 1024;
        let memory = request_memory(2 * FRAME_BYTES);
        // Two clients each announce a frame and send only its first bytes: both frames
        // hold their reservation while they wait for the rest.
        let mut stalled = Vec::new();
        for fill in 0..2 {
            let (mut client, frames) = reader(4 << 20, &memory, TIMEOUTS);
            client
                .write_all(&frame(FRAME_BYTES, fill)[..1000])
                .await
                .unwrap();
            stalled.push((client, frames));
        }
        while memory.bytes_free() > 0 {
            tokio::task::yield_now().await;
        }
        // A third client's whole frame waits: its reader has reserved nothing, read nothing.
        let (mut third, mut third_frames) = reader(4 << 20, &memory, TIMEOUTS);
        third.write_all(&frame(100, 7)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(third_frames.try_recv().is_err());
        // One stalled frame completes; once its payload (and every slice of it) is
        // dropped, the third frame is read.
        let (mut first, mut first_frames) = stalled.remove(0);
        first
            .write_all(&frame(FRAME_BYTES, 0)[1000..])
            .await
            .unwrap();
        let payload = next_payload(&mut first_frames).await;
        let slice = payload.slice(10..20);
        drop(payload);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(third_frames.try_recv().is_err());
        drop(slice);
        assert_eq!(&next_payload(&mut third_frames).await[..], &[7; 100][..]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_stalls_for_the_frame_timeout_closes_and_frees_its_bytes() {
        let memory = request_memory(1 << 20);
        let timeouts = ReadTimeouts {
            idle: Duration::from_secs(600),
            frame: Duration::from_secs(2),
        };
        let (mut client, mut frames) = reader(4 << 20, &memory, timeouts);
        client.write_all(&frame(1 << 20, 1)[..5000]).await.unwrap();
        while memory.bytes_free() > 0 {
            tokio::task::yield_now().await;
        }
        let started = tokio::time::Instant::now();
        assert!(frames.recv().await.is_none());
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(600));
        assert_eq!(memory.bytes_free(), 1 << 20);
    }

    #[tokio::test]
    async fn small_frames_behind_one_another_in_one_read_each_get_their_own_payload() {
        let memory = request_memory(1 << 20);
        let (mut client, mut frames) = reader(64 << 10, &memory, TIMEOUTS);
        let mut bytes = Vec::new();
        for fill in 0..5 {
            bytes.extend(frame(usize::from(fill) * 10, fill));
        }
        client.write_all(&bytes).await.unwrap();
        for fill in 0..5 {
            let payload = next_payload(&mut frames).await;
            assert_eq!(&payload[..], &vec![fill; usize::from(fill) * 10][..]);
        }
        drop(client);
        assert!(frames.recv().await.is_none());
        assert_eq!(memory.bytes_free(), 1 << 20);
    }
}
