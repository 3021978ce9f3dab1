//! A fault-injecting TCP relay. [`Relay::start`] listens on a free loopback port and forwards
//! bytes both ways to a target, on its own thread with its own Tokio runtime. The test thread
//! switches its [`Mode`] at any time: pass, add latency, black-hole (a partition that drops
//! packets: connections stay open, nothing arrives, no RST), stall (nothing moves but nothing
//! is lost), reset every connection with RST, or accept-then-close. A connection either
//! carries a byte-exact stream or dies: one that lost bytes in a black hole is reset when
//! forwarding resumes, as TCP would have timed it out. Dropping the relay closes its listener
//! and every connection and stops its thread.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::Client;

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything (the initial mode).
    Pass,
    /// Forwards every chunk in each direction this much later than it arrived (order kept).
    Delay(Duration),
    /// Keeps every connection open and accepts new ones, but delivers nothing in either
    /// direction: data read is dropped, new connections are not forwarded. A connection that
    /// lost data is reset when forwarding resumes; one that carried nothing resumes.
    Blackhole,
    /// Like a black hole that loses nothing: bytes wait and are delivered when forwarding
    /// resumes (a partition that heals before TCP gives up).
    Stall,
    /// Closes every connection with RST (SO_LINGER 0) and resets new ones right after accept.
    Reset,
    /// Accepts new connections and closes them at once (FIN); current ones keep forwarding.
    Refuse,
}

impl Mode {
    /// Whether current connections move bytes in this mode.
    fn forwards(self) -> bool {
        matches!(self, Mode::Pass | Mode::Delay(_) | Mode::Refuse)
    }
}

/// A running relay; stops (closing every connection) on drop.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    live: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on `127.0.0.1:<free port>` forwarding to `target`, in [`Mode::Pass`].
    /// Each accepted connection opens its own connection to `target` once it may forward;
    /// when `target` does not accept, the client's connection is reset.
    pub fn start(target: SocketAddr) -> Relay {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let live = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = oneshot::channel::<()>();
        let counter = live.clone();
        let thread = std::thread::Builder::new()
            .name(format!("relay-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("relay runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("relay listener");
                    tokio::select! {
                        _ = accept_loop(listener, target, mode_rx, counter) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime drops every connection task, closing its sockets.
            })
            .expect("relay thread");
        Relay {
            addr,
            target,
            mode,
            live,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The relay's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's listening address as `127.0.0.1:port`.
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A client connected through the relay.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Switches to any mode.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Forwards everything again (connections that lost data in a black hole are reset).
    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Drops all data both ways and stops forwarding new connections; nothing is closed.
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Holds all data both ways (delivered on [`pass`](Self::pass)); nothing is closed.
    pub fn stall(&self) {
        self.set_mode(Mode::Stall);
    }

    /// Resets every connection (RST) and each new one until [`pass`](Self::pass); returns
    /// once every current connection is closed (panics after 5 s).
    pub fn reset(&self) {
        self.set_mode(Mode::Reset);
        assert!(
            self.wait_connections(0, Duration::from_secs(5)),
            "relay {} still has {} connections after reset",
            self.addr,
            self.connections()
        );
    }

    /// Delivers every chunk `d` later than it arrived, in both directions.
    pub fn delay(&self, d: Duration) {
        self.set_mode(Mode::Delay(d));
    }

    /// Accepts new connections and closes them at once; current ones keep forwarding.
    pub fn refuse(&self) {
        self.set_mode(Mode::Refuse);
    }

    /// Client connections currently open through the relay (held ones included).
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits until exactly `n` connections are open.
    pub fn wait_connections(&self, n: usize, deadline: Duration) -> bool {
        let until = std::time::Instant::now() + deadline;
        while self.connections() != n {
            if std::time::Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counts an open client connection while alive.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Live(counter.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes the socket's close send RST.
fn rst(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    live: Arc<AtomicUsize>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let now = *mode.borrow();
        match now {
            Mode::Reset => rst(&client),
            Mode::Refuse => {}
            _ => {
                let guard = Live::new(&live);
                tokio::spawn(connection(client, target, mode.clone(), guard));
                continue;
            }
        }
        drop(client);
    }
}

/// One client connection: held until the relay forwards, then relayed.
async fn connection(
    client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    _live: Live,
) {
    let mut lost = false;
    let mut eof = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let m = *mode.borrow_and_update();
        if m == Mode::Reset {
            return rst(&client);
        }
        if m.forwards() {
            break;
        }
        if m == Mode::Blackhole && !eof {
            tokio::select! {
                r = read_some(&client, &mut buf) => match r {
                    Ok(0) => eof = true,
                    Ok(_) => lost = true,
                    Err(_) => return,
                },
                c = mode.changed() => if c.is_err() { return },
            }
        } else if mode.changed().await.is_err() {
            return;
        }
    }
    if lost {
        return rst(&client);
    }
    if eof {
        return;
    }
    let upstream =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            _ => return rst(&client),
        };
    let _ = upstream.set_nodelay(true);
    let client = Arc::new(client);
    let upstream = Arc::new(upstream);
    let lost = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for (src, dst) in [
        (client.clone(), upstream.clone()),
        (upstream.clone(), client.clone()),
    ] {
        let (tx, rx) = mpsc::channel(64);
        tasks.spawn(read_side(src, tx, mode.clone(), lost.clone()));
        tasks.spawn(write_side(dst, rx, mode.clone(), lost.clone()));
    }
    let clean = loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break true,
                Some(Ok(Ok(()))) => {}
                Some(_) => break false,
            },
            c = mode.changed() => {
                if c.is_err() {
                    break true;
                }
                let m = *mode.borrow_and_update();
                if m == Mode::Reset || (m.forwards() && lost.load(Ordering::SeqCst)) {
                    break false;
                }
            }
        }
    };
    if !clean {
        rst(&client);
        rst(&upstream);
    }
    tasks.shutdown().await;
    // The sockets close here, with the last references.
}

/// A chunk to deliver at `due`; `None` is end of stream.
struct Chunk {
    due: Instant,
    data: Option<Vec<u8>>,
}

/// Reads `src` and queues what it reads (timestamped) for the writer.
async fn read_side(
    src: Arc<TcpStream>,
    tx: mpsc::Sender<Chunk>,
    mut mode: watch::Receiver<Mode>,
    lost: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *mode.borrow_and_update() == Mode::Stall {
            if mode.changed().await.is_err() {
                return Ok(());
            }
            continue;
        }
        let n = read_some(&src, &mut buf).await?;
        let now = Instant::now();
        if n == 0 {
            let _ = tx
                .send(Chunk {
                    due: now,
                    data: None,
                })
                .await;
            return Ok(());
        }
        let due = match *mode.borrow() {
            Mode::Blackhole => {
                lost.store(true, Ordering::SeqCst);
                continue;
            }
            Mode::Delay(d) => now + d,
            _ => now,
        };
        let chunk = Chunk {
            due,
            data: Some(buf[..n].to_vec()),
        };
        if tx.send(chunk).await.is_err() {
            return Ok(());
        }
    }
}

/// Writes queued chunks to `dst` when they are due and the mode lets them through.
async fn write_side(
    dst: Arc<TcpStream>,
    mut rx: mpsc::Receiver<Chunk>,
    mut mode: watch::Receiver<Mode>,
    lost: Arc<AtomicBool>,
) -> io::Result<()> {
    while let Some(chunk) = rx.recv().await {
        loop {
            let m = *mode.borrow_and_update();
            if m == Mode::Blackhole && chunk.data.is_some() {
                lost.store(true, Ordering::SeqCst);
                break;
            }
            if !m.forwards() {
                // Stall, Reset (the connection task resets us) or an end of stream in a
                // black hole: wait for the next mode.
                if mode.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() < chunk.due {
                tokio::select! {
                    _ = tokio::time::sleep_until(chunk.due) => {}
                    c = mode.changed() => if c.is_err() { return Ok(()) },
                }
                continue;
            }
            match &chunk.data {
                Some(d) => write_all(&dst, d).await?,
                None => {
                    let _ = socket2::SockRef::from(&*dst).shutdown(Shutdown::Write);
                    return Ok(());
                }
            }
            break;
        }
    }
    Ok(())
}

async fn read_some(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(s: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
