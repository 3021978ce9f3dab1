//! Helpers shared by the tests of stateful commands (transactions, blocking commands, pub/sub,
//! MONITOR, tracking, connection state): a client that also shows each reply's exact bytes, a
//! way to run one script against a plain `redis-server` and through the proxy and compare what
//! comes back, and polling with a deadline for server-side facts (a client is blocked, a
//! channel has subscribers) instead of sleeps.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::support::client::{encode_strs, read_frame};
use super::support::{Frame, RedisServer};

/// How long [`eventually`] waits before it fails the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A buffered reader that remembers every byte handed out, so that the bytes of one decoded
/// frame can be shown exactly.
#[derive(Debug)]
struct Tee {
    inner: BufReader<TcpStream>,
    seen: Vec<u8>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Tee {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.seen.extend_from_slice(&self.inner.buffer()[..n]);
        self.inner.consume(n);
    }
}

/// A blocking client whose reads return the exact bytes of one reply.
#[derive(Debug)]
pub struct Exact {
    reader: Tee,
    writer: TcpStream,
}

impl Exact {
    /// Connects (panics on failure).
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone");
        Self {
            reader: Tee {
                inner: BufReader::new(stream),
                seen: Vec::new(),
            },
            writer,
        }
    }

    /// Changes the read deadline (a failure guard, not a synchronisation).
    pub fn set_read_timeout(&self, d: Duration) {
        let _ = self.writer.set_read_timeout(Some(d));
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Sends one command without reading.
    pub fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode_strs(args));
    }

    /// Reads one reply and returns its exact bytes.
    pub fn read_bytes(&mut self) -> Vec<u8> {
        self.try_read_bytes().expect("read reply")
    }

    /// Reads one reply's bytes.
    pub fn try_read_bytes(&mut self) -> std::io::Result<Vec<u8>> {
        self.reader.seen.clear();
        read_frame(&mut self.reader)?;
        Ok(std::mem::take(&mut self.reader.seen))
    }

    /// Reads one reply, decoded.
    pub fn read(&mut self) -> Frame {
        self.reader.seen.clear();
        read_frame(&mut self.reader).expect("read reply")
    }

    /// Sends a command and returns its reply's exact bytes, shown as escaped text.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        self.send(args);
        show(&self.read_bytes())
    }

    /// Sends a command and returns its decoded reply.
    pub fn cmd_frame(&mut self, args: &[&str]) -> Frame {
        self.send(args);
        self.read()
    }

    /// Whether the peer closed the connection (reads until EOF or the deadline).
    pub fn closed(&mut self, within: Duration) -> bool {
        self.set_read_timeout(within);
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Bytes as readable text: `*1\r\n+OK\r\n`.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// One step of a script: a command and how many reply frames it produces (0 for a command
/// whose reply is suppressed, several for SUBSCRIBE with several channels).
pub type Step<'a> = (&'a [&'a str], usize);

/// Runs a script on a fresh connection to `addr`: every command is sent and its replies read
/// before the next one. Returns every reply frame as escaped text, in order.
pub fn run_script(addr: SocketAddr, steps: &[Step<'_>]) -> Vec<String> {
    let mut c = Exact::connect(addr);
    let mut out = Vec::new();
    for (args, frames) in steps {
        c.send(args);
        for _ in 0..*frames {
            out.push(show(&c.read_bytes()));
        }
    }
    out
}

/// Runs the same script directly on `reference` (a plain Redis) and on `proxy`, and asserts
/// that the client receives the same bytes from both. Returns the replies.
pub fn assert_same_as_redis(
    reference: SocketAddr,
    proxy: SocketAddr,
    steps: &[Step<'_>],
) -> Vec<String> {
    let expected = run_script(reference, steps);
    let got = run_script(proxy, steps);
    assert_eq!(
        got, expected,
        "replies through the proxy (left) differ from redis-server's (right)"
    );
    got
}

/// Polls `check` until it holds; fails the test with `what` after [`DEADLINE`].
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for: {what}");
}

/// A numeric field of `INFO <section>` on the server itself.
pub fn info_field(redis: &RedisServer, section: &str, field: &str) -> i64 {
    let text = redis.cmd(&["INFO", section]).text();
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}: {text}"))
}

/// Clients blocked on the server (BLPOP, XREAD BLOCK, WAIT, ...).
pub fn blocked_clients(redis: &RedisServer) -> i64 {
    info_field(redis, "clients", "blocked_clients")
}

/// Waits until exactly `n` clients are blocked on the server.
pub fn wait_blocked(redis: &RedisServer, n: i64) {
    eventually(&format!("{n} blocked client(s) on the server"), || {
        blocked_clients(redis) == n
    });
}

/// Sends every command of `steps` in one write on a fresh connection to `addr`, then reads all
/// the reply frames the steps announce. Returns them as escaped text, in order.
pub fn run_pipeline(addr: SocketAddr, steps: &[Step<'_>]) -> Vec<String> {
    let mut c = Exact::connect(addr);
    let mut raw = Vec::new();
    for (args, _) in steps {
        raw.extend(encode_strs(args));
    }
    c.send_raw(&raw);
    let total: usize = steps.iter().map(|(_, n)| n).sum();
    (0..total).map(|_| show(&c.read_bytes())).collect()
}

/// [`run_pipeline`] on `reference` (a plain Redis) and on `proxy`; asserts equal replies.
pub fn assert_pipeline_same_as_redis(
    reference: SocketAddr,
    proxy: SocketAddr,
    steps: &[Step<'_>],
) -> Vec<String> {
    let expected = run_pipeline(reference, steps);
    let got = run_pipeline(proxy, steps);
    assert_eq!(
        got, expected,
        "pipelined replies through the proxy (left) differ from redis-server's (right)"
    );
    got
}

/// Sends `cmds` in one write on a fresh connection to `addr`, then reads reply frames until
/// one equals `marker` (escaped text). A read that finds nothing for a few seconds ends the
/// list early (a failure guard: the caller's comparison then shows what arrived). Returns the
/// frames read, the marker included.
pub fn run_until_marker(addr: SocketAddr, cmds: &[&[&str]], marker: &str) -> Vec<String> {
    let mut c = Exact::connect(addr);
    c.set_read_timeout(Duration::from_secs(3));
    let mut raw = Vec::new();
    for args in cmds {
        raw.extend(encode_strs(args));
    }
    c.send_raw(&raw);
    let mut out = Vec::new();
    while let Ok(bytes) = c.try_read_bytes() {
        let frame = show(&bytes);
        let done = frame == marker;
        out.push(frame);
        if done {
            break;
        }
    }
    out
}

/// [`run_until_marker`] on `reference` (a plain Redis) and on `proxy`; asserts that the frames
/// after the first `ignore` ones (HELLO's reply, whose id differs) are equal. Returns them.
pub fn assert_same_until_marker(
    reference: SocketAddr,
    proxy: SocketAddr,
    cmds: &[&[&str]],
    marker: &str,
    ignore: usize,
) -> Vec<String> {
    let expected = run_until_marker(reference, cmds, marker);
    let got = run_until_marker(proxy, cmds, marker);
    assert_eq!(
        expected.last().map(String::as_str),
        Some(marker),
        "redis-server never answered the marker: {expected:?}"
    );
    let expected = expected.get(ignore..).unwrap_or_default().to_vec();
    let got = got.get(ignore..).unwrap_or_default().to_vec();
    assert_eq!(
        got, expected,
        "replies through the proxy (left) differ from redis-server's (right)"
    );
    got
}
