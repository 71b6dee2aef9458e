//! Writes a response's chunks to its socket, sending large record chunks straight from
//! their segment files with `sendfile(2)`.
//!
//! A fetch response is header bytes and `Bytes` slices of segment mappings (see
//! `strata_protocol::wire::VectoredBuf`). `writev` of a mapped slice makes the kernel copy
//! it from the page cache into socket buffers. `sendfile` hands the socket references to
//! the page-cache pages instead, so the broker's CPU copies nothing; the reader's `recv`
//! is then the only copy. Kafka sends fetched records the same way (`transferTo`).
//!
//! A chunk goes by `sendfile` when it is exactly the bytes of one of the reply's
//! [`FileRange`]s and at least [`SENDFILE_BYTES_MIN`] long; everything else is written
//! with `writev` as before. The range is held while `sendfile` runs, so its bytes are in
//! the file (see `FileRange`). The pages stay referenced by the socket until the peer
//! reads them; the broker never truncates below the high watermark, which bounds every
//! fetch, so what the peer reads is what the range held (docs/storage.md, "Reads as file
//! ranges").
//!
//! Every write goes through a [`ReplySocket`], which fails a write that makes no progress
//! for `write_timeout_ms`: a client that stops reading cannot hold the connection, its
//! queued replies and their segment files forever.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use strata_protocol::codec;
use strata_storage::FileRange;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Sleep;

/// Record chunks shorter than this are written with the rest of the response: below it,
/// the extra system calls cost more than the copy they save.
pub const SENDFILE_BYTES_MIN: usize = 16 << 10;

/// A connection's write half whose writes fail with [`io::ErrorKind::TimedOut`] once the
/// socket has taken no byte for `timeout`. Owned by the connection's writer task.
#[derive(Debug)]
pub struct ReplySocket {
    socket: OwnedWriteHalf,
    timeout: Duration,
    /// Runs from the first write that had to wait, until a write makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl ReplySocket {
    /// Writes to `socket`, giving up after `timeout` without progress.
    pub fn new(socket: OwnedWriteHalf, timeout: Duration) -> Self {
        Self {
            socket,
            timeout,
            stalled: None,
        }
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client read nothing for write_timeout_ms ({} ms)",
                self.timeout.as_millis()
            ),
        )
    }

    /// Passes on a write's outcome; a write still waiting fails once it has waited
    /// `timeout` since the last progress.
    fn within_timeout<T>(
        &mut self,
        context: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(Err(self.timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits until the socket can take bytes, within the timeout.
    async fn writable(&self) -> io::Result<()> {
        let stream: &TcpStream = self.socket.as_ref();
        match tokio::time::timeout(self.timeout, stream.writable()).await {
            Ok(ready) => ready,
            Err(_) => Err(self.timed_out()),
        }
    }
}

impl AsyncWrite for ReplySocket {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.socket).poll_write(context, bytes);
        this.within_timeout(context, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.socket).poll_write_vectored(context, slices);
        this.within_timeout(context, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.socket).poll_flush(context);
        this.within_timeout(context, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.socket).poll_shutdown(context);
        this.within_timeout(context, outcome)
    }
}

/// Writes `chunks` in order; the chunks that are one of `files` (and long enough) go by
/// `sendfile`, runs of the others by vectored writes. Returns the bytes sent by
/// `sendfile`.
///
/// # Errors
/// The socket's error; [`io::ErrorKind::WriteZero`] if it accepts nothing;
/// [`io::ErrorKind::TimedOut`] if it takes nothing for the socket's timeout.
pub async fn write_chunks(
    socket: &mut ReplySocket,
    chunks: Vec<Bytes>,
    files: &[FileRange],
) -> io::Result<usize> {
    if files.is_empty() {
        return codec::write_chunks(socket, chunks).await.map(|()| 0);
    }
    let mut run = Vec::with_capacity(chunks.len());
    let mut by_sendfile = 0;
    for chunk in chunks {
        let range = files.iter().find(|range| {
            chunk.len() >= SENDFILE_BYTES_MIN && std::ptr::eq(range.bytes(), chunk.as_ref())
        });
        match range {
            Some(range) => {
                codec::write_chunks(socket, std::mem::take(&mut run)).await?;
                by_sendfile += send_range(socket, range).await?;
            }
            None => run.push(chunk),
        }
    }
    codec::write_chunks(socket, run).await?;
    Ok(by_sendfile)
}

/// Sends the whole range with `sendfile`, waiting for the socket to take more. If the file
/// system cannot `sendfile`, the rest is written from the mapping. Returns the bytes sent
/// by `sendfile`.
async fn send_range(socket: &mut ReplySocket, range: &FileRange) -> io::Result<usize> {
    let length = range.bytes().len();
    let mut sent = 0;
    while sent < length {
        socket.writable().await?;
        let stream: &TcpStream = socket.socket.as_ref();
        let offset = range.position() + sent as u64;
        let result = stream.try_io(Interest::WRITABLE, || {
            sendfile(stream.as_raw_fd(), range.as_raw_fd(), offset, length - sent)
        });
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => sent += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) if unsupported(&error) => {
                socket.write_all(&range.bytes()[sent..]).await?;
                return Ok(sent);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(sent)
}

/// `sendfile(2)` of up to `count` bytes of `file` from `offset` (the file's own position
/// is left alone).
fn sendfile(socket: RawFd, file: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    // SAFETY: both descriptors are open for the whole call (the socket is borrowed, the
    // file is held by its `FileRange`), and `offset` is a valid `off_t` on the stack.
    let sent = unsafe { libc::sendfile(socket, file, &raw mut offset, count) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// The file system or socket does not do `sendfile` at all.
fn unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}
