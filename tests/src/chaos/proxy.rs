//! An in-process TCP proxy that the harness controls: clients connect to it and it
//! forwards each connection to the current upstream (a broker). It can cut (drop every
//! connection and close new ones at once), cut one way (discard what one side sends while
//! the connection stays open), heal, add a delay to every chunk it forwards, and switch
//! upstream (a broker restarted on a new port). No iptables, nothing to install: it runs
//! anywhere.
//!
//! The cluster's cuts (one node off, asymmetric, majority and minority) are built from
//! one proxy per link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes forwarded per read.
const CHUNK_BYTES_MAX: usize = 64 << 10;

/// The way bytes go through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the upstream.
    ToUpstream,
    /// From the upstream back to the client.
    ToClient,
}

/// The control state shared by the proxy's tasks and its handle.
#[derive(Debug)]
struct Control {
    upstream: Mutex<Option<SocketAddr>>,
    cut: AtomicBool,
    /// Per [`Direction`]: whether bytes going that way are discarded.
    one_way_cut: [AtomicBool; 2],
    /// Bytes discarded by one-way cuts so far.
    discarded: AtomicUsize,
    delay_ms: AtomicU64,
    /// Bumped to end every open connection.
    generation: watch::Sender<u64>,
}

/// A running proxy. Its control methods are synchronous and thread-safe, so a nemesis
/// thread outside the runtime drives it. Dropping it stops accepting and ends every
/// connection.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    control: Arc<Control>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a loopback port the OS picks, with no upstream yet: until
    /// [`set_upstream`](Self::set_upstream), connections are closed at once.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let control = Arc::new(Control {
            upstream: Mutex::new(None),
            cut: AtomicBool::new(false),
            one_way_cut: [AtomicBool::new(false), AtomicBool::new(false)],
            discarded: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
            generation: watch::channel(0).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&control)));
        Ok(Self {
            address,
            control,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Forwards new connections to `upstream`; open ones keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .control
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstream);
    }

    /// Cuts the link: drops every open connection and closes new ones at once.
    pub fn cut(&self) {
        self.control.cut.store(true, Ordering::SeqCst);
        self.drop_connections();
    }

    /// Cuts the link one way: from now on, what goes in `direction` is read and
    /// discarded, while connections stay open and the other way still flows. The side
    /// that sends is not heard; the one that listens hears nothing and cannot tell.
    pub fn cut_one_way(&self, direction: Direction) {
        self.control.one_way_cut[direction as usize].store(true, Ordering::SeqCst);
    }

    /// Bytes discarded by one-way cuts so far.
    pub fn discarded_bytes(&self) -> usize {
        self.control.discarded.load(Ordering::SeqCst)
    }

    /// Heals a cut, full or one-way: new connections are forwarded again, and open ones
    /// forward both ways.
    pub fn heal(&self) {
        self.control.cut.store(false, Ordering::SeqCst);
        for cut in &self.control.one_way_cut {
            cut.store(false, Ordering::SeqCst);
        }
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.control.cut.load(Ordering::SeqCst)
    }

    /// Delays every chunk forwarded from now on, both ways, by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.control.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Drops every open connection; new ones are accepted as before.
    pub fn drop_connections(&self) {
        self.control
            .generation
            .send_modify(|generation| *generation += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

async fn accept_loop(listener: TcpListener, control: Arc<Control>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = *control
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(upstream) = upstream.filter(|_| !control.cut.load(Ordering::SeqCst)) else {
            // Cut, or nowhere to go: the client sees its connection closed at once.
            continue;
        };
        let generation = control.generation.subscribe();
        tokio::spawn(forward(client, upstream, Arc::clone(&control), generation));
    }
}

/// Forwards one connection until either side closes or the connections are dropped.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    control: Arc<Control>,
    mut generation: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, &control, Direction::ToUpstream) => {}
        _ = pump(server_read, client_write, &control, Direction::ToClient) => {}
        _ = generation.changed() => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: &Control,
    direction: Direction,
) {
    let mut buffer = vec![0; CHUNK_BYTES_MAX];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if control.one_way_cut[direction as usize].load(Ordering::SeqCst) {
            control.discarded.fetch_add(read, Ordering::SeqCst);
            continue;
        }
        let delay_ms = control.delay_ms.load(Ordering::SeqCst);
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// An upstream that echoes whatever it is sent.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn proxy_to_echo() -> Proxy {
        let proxy = Proxy::start().await.expect("proxy");
        proxy.set_upstream(echo_server().await);
        proxy
    }

    /// Sends `bytes` and reads the echo; `None` if the connection closed.
    async fn round_trip(socket: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
        socket.write_all(bytes).await.ok()?;
        let mut echoed = vec![0; bytes.len()];
        match tokio::time::timeout(WAIT, socket.read_exact(&mut echoed)).await {
            Ok(Ok(_)) => Some(echoed),
            Ok(Err(_)) => None,
            Err(_) => panic!("no echo and no close within {WAIT:?}"),
        }
    }

    async fn connect(proxy: &Proxy) -> TcpStream {
        TcpStream::connect(proxy.address()).await.expect("connect")
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let proxy = proxy_to_echo().await;
        let mut socket = connect(&proxy).await;
        assert_eq!(
            round_trip(&mut socket, b"hello").await.as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[tokio::test]
    async fn a_cut_drops_open_connections_and_closes_new_ones_until_healed() {
        let proxy = proxy_to_echo().await;
        let mut open = connect(&proxy).await;
        assert!(round_trip(&mut open, b"a").await.is_some());
        proxy.cut();
        assert!(proxy.is_cut());
        assert_eq!(
            round_trip(&mut open, b"b").await,
            None,
            "the open one is dropped"
        );
        let mut refused = connect(&proxy).await;
        assert_eq!(
            round_trip(&mut refused, b"c").await,
            None,
            "a new one is closed"
        );
        proxy.heal();
        let mut healed = connect(&proxy).await;
        assert_eq!(
            round_trip(&mut healed, b"d").await.as_deref(),
            Some(&b"d"[..])
        );
    }

    /// Polls until the proxy has discarded `bytes` in all.
    async fn discarded(proxy: &Proxy, bytes: usize) {
        let deadline = Instant::now() + WAIT;
        while proxy.discarded_bytes() < bytes {
            assert!(Instant::now() < deadline, "{bytes} bytes never discarded");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_one_way_cut_discards_that_way_only_and_keeps_the_connection() {
        // Replies are lost: the echo of "lost" never arrives, the open connection does
        // and, once healed, carries the next echo.
        let proxy = proxy_to_echo().await;
        let mut socket = connect(&proxy).await;
        proxy.cut_one_way(Direction::ToClient);
        socket.write_all(b"lost").await.expect("write");
        discarded(&proxy, 4).await;
        proxy.heal();
        assert_eq!(
            round_trip(&mut socket, b"kept").await.as_deref(),
            Some(&b"kept"[..])
        );

        // Requests are lost: the upstream never hears "gone", and hears "here" after.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        proxy.set_upstream(listener.local_addr().expect("address"));
        let mut socket = connect(&proxy).await;
        let (mut upstream, _) = listener.accept().await.expect("accept");
        proxy.cut_one_way(Direction::ToUpstream);
        socket.write_all(b"gone").await.expect("write");
        discarded(&proxy, 8).await;
        proxy.heal();
        socket.write_all(b"here").await.expect("write");
        let mut heard = [0; 4];
        upstream.read_exact(&mut heard).await.expect("read");
        assert_eq!(&heard, b"here");
    }

    #[tokio::test]
    async fn a_delay_holds_every_chunk() {
        let proxy = proxy_to_echo().await;
        proxy.set_delay(Duration::from_millis(100));
        let mut socket = connect(&proxy).await;
        let started = Instant::now();
        assert!(round_trip(&mut socket, b"slow").await.is_some());
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "delayed both ways"
        );
    }

    #[tokio::test]
    async fn new_connections_follow_a_new_upstream() {
        let proxy = proxy_to_echo().await;
        let other = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        proxy.set_upstream(other.local_addr().expect("address"));
        let _client = connect(&proxy).await;
        tokio::time::timeout(WAIT, other.accept())
            .await
            .expect("the new upstream is reached")
            .expect("accept");
    }

    #[tokio::test]
    async fn without_an_upstream_connections_close() {
        let proxy = Proxy::start().await.expect("proxy");
        let mut socket = connect(&proxy).await;
        assert_eq!(round_trip(&mut socket, b"x").await, None);
    }
}
