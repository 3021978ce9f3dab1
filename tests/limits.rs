//! Client limits (`[limits]`): the client count, bulk length, argument count, query buffer and
//! output buffer. A client that crosses a limit gets an error and is closed; every other client
//! keeps being served. Also: values of 0 bytes, 1 byte and 20 MB round-trip intact, alone and
//! inside a pipeline.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::client::{encode, read_frame};
use support::{Client, Frame, Proxy, RedisServer};

/// A connection whose writes may fail (the proxy may close it while we write).
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let w = s.try_clone().expect("clone");
        Self {
            w,
            r: BufReader::new(s),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)
    }

    fn read(&mut self) -> std::io::Result<Frame> {
        read_frame(&mut self.r)
    }

    /// Reads until EOF (or a reset); returns the bytes read, or `None` if the connection
    /// stayed open for `within`.
    fn read_to_close(&mut self, within: Duration) -> Option<usize> {
        let _ = self.w.set_read_timeout(Some(within));
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        loop {
            match self.r.read(&mut buf) {
                Ok(0) => return Some(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(total),
                Err(_) => return None,
            }
        }
    }
}

fn err(text: &str) -> Frame {
    Frame::Error(text.to_string())
}

/// Bytes with every value, `\r` and `\n` included.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A proxy with `[limits]` set to `limits` (TOML lines).
fn proxy_with_limits(redis: &RedisServer, limits: &str) -> Proxy {
    Proxy::builder()
        .config(&format!("[limits]\n{limits}\n"))
        .nodes(&[redis])
        .start()
}

/// `max_clients = 3`:
/// 1. Three clients connect and are served (retried until the readiness check's own
///    connection has left).
/// 2. A fourth gets `-ERR max number of clients reached` and is closed.
/// 3. The three keep working; once one leaves, a new client is accepted.
#[test]
fn max_clients_refuses_the_extra_client() {
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "max_clients = 3");
    let until = Instant::now() + Duration::from_secs(10);
    let mut clients = loop {
        let mut cs: Vec<Client> = (0..3).map(|_| proxy.client()).collect();
        if cs
            .iter_mut()
            .all(|c| c.cmd(&["PING"]) == Frame::Simple("PONG".into()))
        {
            break cs;
        }
        assert!(Instant::now() < until, "three clients never served");
        drop(cs);
        std::thread::sleep(Duration::from_millis(50));
    };

    let mut extra = proxy.client();
    assert_eq!(extra.read(), err("ERR max number of clients reached"));
    assert!(
        extra.closed(Duration::from_secs(5)),
        "extra client not closed"
    );

    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("k{i}");
        assert_eq!(c.cmd(&["SET", &key, "v"]), Frame::ok());
        assert_eq!(c.cmd(&["GET", &key]), Frame::bulk("v"));
    }

    drop(clients.pop());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = proxy.client();
        c.send(&["PING"]);
        match c.try_read() {
            Ok(Frame::Simple(s)) if s == "PONG" => break,
            Ok(Frame::Error(e)) if e == "ERR max number of clients reached" => {}
            other => panic!("unexpected reply: {other:?}"),
        }
        assert!(Instant::now() < until, "freed slot never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `max_bulk_len = "1kb"`:
/// 1. A 1024-byte value is accepted.
/// 2. A bulk header of 1025 gets `Protocol error: invalid bulk length` and the client is
///    closed; nothing is written to Redis.
/// 3. Another client is unaffected.
#[test]
fn max_bulk_len_closes_the_client() {
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "max_bulk_len = \"1kb\"");
    let mut other = proxy.client();
    let mut c = proxy.client();
    let ok = "a".repeat(1024);
    assert_eq!(c.cmd(&["SET", "k", &ok]), Frame::ok());
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$2\r\nk2\r\n$1025\r\n");
    assert_eq!(c.read(), err("ERR Protocol error: invalid bulk length"));
    assert!(c.closed(Duration::from_secs(5)), "not closed");
    assert_eq!(redis.cmd(&["EXISTS", "k2"]), Frame::Int(0));
    assert_eq!(other.cmd(&["GET", "k"]), Frame::bulk(&ok));
}

/// `max_args = 5`:
/// 1. A 5-argument command works.
/// 2. A 6-argument header gets `Protocol error: invalid multibulk length`; the client is
///    closed, another client is unaffected.
#[test]
fn max_args_closes_the_client() {
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "max_args = 5");
    let mut other = proxy.client();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["RPUSH", "l", "a", "b", "c"]), Frame::Int(3));
    c.send_raw(b"*6\r\n");
    assert_eq!(
        c.read(),
        err("ERR Protocol error: invalid multibulk length")
    );
    assert!(c.closed(Duration::from_secs(5)), "not closed");
    assert_eq!(other.cmd(&["LLEN", "l"]), Frame::Int(3));
}

/// `query_buffer = "64kb"`:
/// 1. A 60 KB command and a 1 MB pipeline of small commands are accepted.
/// 2. A command announcing 100 000 bytes, of which 64 KB arrive, gets a protocol error and the
///    client is closed; the key is never written.
/// 3. A MULTI whose queued commands exceed the limit closes the client too (as Redis counts
///    queued arguments); nothing of it runs.
/// 4. Another client keeps working throughout.
#[test]
fn query_buffer_limit_closes_only_the_offender() {
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "query_buffer = \"64kb\"");
    let mut other = proxy.client();

    let mut c = proxy.client();
    let v60 = "b".repeat(60 * 1024);
    assert_eq!(c.cmd(&["SET", "k60", &v60]), Frame::ok());
    let mut pipeline = Vec::new();
    let v1k = vec![b'c'; 1024];
    for i in 0..1024 {
        pipeline.extend(encode(&[b"SET", format!("p{i}").as_bytes(), &v1k]));
    }
    c.send_raw(&pipeline);
    for i in 0..1024 {
        assert_eq!(c.read(), Frame::ok(), "pipelined SET {i}");
    }

    let mut big = Raw::connect(proxy.addr());
    let mut frame = b"*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$100000\r\n".to_vec();
    frame.extend(vec![b'h'; 64 * 1024]);
    big.write(&frame).expect("write");
    let r = big.read().expect("reply before close");
    assert!(r.is_error("ERR Protocol error"), "{r:?}");
    assert!(
        big.read_to_close(Duration::from_secs(5)).is_some(),
        "not closed"
    );
    assert_eq!(redis.cmd(&["EXISTS", "huge"]), Frame::Int(0));
    assert_eq!(other.cmd(&["GET", "k60"]), Frame::bulk(&v60));

    let mut tx = Raw::connect(proxy.addr());
    let v40 = vec![b'd'; 40 * 1024];
    tx.write(&encode(&[b"MULTI"])).expect("write");
    assert_eq!(tx.read().expect("MULTI"), Frame::ok());
    tx.write(&encode(&[b"SET", b"t1", &v40])).expect("write");
    assert_eq!(tx.read().expect("queued"), Frame::Simple("QUEUED".into()));
    tx.write(&encode(&[b"SET", b"t2", &v40])).expect("write");
    let r = tx.read().expect("reply before close");
    assert!(r.is_error("ERR Protocol error"), "{r:?}");
    assert!(
        tx.read_to_close(Duration::from_secs(5)).is_some(),
        "not closed"
    );
    assert_eq!(redis.cmd(&["EXISTS", "t1", "t2"]), Frame::Int(0));

    assert_eq!(other.cmd(&["SET", "after", "1"]), Frame::ok());
    assert_eq!(other.cmd(&["GET", "after"]), Frame::bulk("1"));
}

/// `query_buffer = "64kb"`, a whole frame larger than the limit arriving at once (Redis, too,
/// closes a client whose query buffer exceeds `client-query-buffer-limit`, however the bytes
/// arrived):
/// 1. A client sends a complete 100 000-byte SET in one write.
/// 2. It does not get +OK: it gets a protocol error or nothing, and its connection is closed.
/// 3. The key is not on Redis; another client keeps working.
#[test]
fn a_whole_frame_over_the_query_buffer_limit_is_refused() {
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "query_buffer = \"64kb\"");
    let mut other = proxy.client();
    let mut c = Raw::connect(proxy.addr());
    let value = vec![b'q'; 100_000];
    // The proxy may close while the frame is still arriving; the write's result is not the
    // point, the reply and the close are.
    let _ = c.write(&encode(&[b"SET", b"whole", &value]));
    match c.read() {
        Ok(f) => assert!(f.is_error("ERR Protocol error"), "accepted: {f:?}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "neither a reply nor a close: {e}"
        ),
    }
    assert!(
        c.read_to_close(Duration::from_secs(5)).is_some(),
        "not closed"
    );
    assert_eq!(redis.cmd(&["EXISTS", "whole"]), Frame::Int(0));
    assert_eq!(other.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// `output_buffer = "1mb"`:
/// 1. A 256 KB value is stored.
/// 2. A greedy client pipelines 400 GETs of it (100 MB of replies) and never reads.
/// 3. Meanwhile another client does SET/GET round trips, each answered correctly, until the
///    greedy client disappears from CLIENT LIST.
/// 4. The greedy connection is closed before it received all its replies.
#[test]
fn output_buffer_limit_disconnects_a_client_that_does_not_read() {
    const VALUE: usize = 256 * 1024;
    const GETS: usize = 400;
    let redis = RedisServer::start();
    let proxy = proxy_with_limits(&redis, "output_buffer = \"1mb\"");
    let mut other = proxy.client();
    assert_eq!(other.cmd(&["SET", "big", &"v".repeat(VALUE)]), Frame::ok());

    let mut greedy = Raw::connect(proxy.addr());
    greedy.write(&encode(&[b"CLIENT", b"ID"])).expect("write");
    let Frame::Int(id) = greedy.read().expect("CLIENT ID") else {
        panic!("CLIENT ID is not an integer");
    };
    let mut gets = Vec::new();
    for _ in 0..GETS {
        gets.extend(encode(&[b"GET", b"big"]));
    }
    greedy.write(&gets).expect("write pipeline");

    let until = Instant::now() + Duration::from_secs(20);
    let mut round = 0u64;
    loop {
        let v = format!("value-{round}");
        assert_eq!(other.cmd(&["SET", "small", &v]), Frame::ok());
        assert_eq!(other.cmd(&["GET", "small"]), Frame::bulk(&v));
        round += 1;
        let list = other.cmd(&["CLIENT", "LIST"]).text();
        if !list.contains(&format!("id={id} ")) {
            break;
        }
        assert!(
            Instant::now() < until,
            "client that never reads is still connected:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let got = greedy.read_to_close(Duration::from_secs(20));
    let got = got.expect("greedy client's connection was not closed");
    assert!(got < VALUE * GETS, "greedy client received all {got} bytes");
    assert_eq!(
        other.cmd(&["GET", "small"]).text(),
        format!("value-{}", round - 1)
    );
}

/// Values of 0 bytes, 1 byte and 20 MB (binary, with `\r\n` inside) round-trip intact with
/// SET then GET, and again inside one pipeline that also carries small commands.
#[test]
fn empty_tiny_and_twenty_megabyte_values_round_trip() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    let huge = binary(20 * 1024 * 1024);
    for (key, value) in [(&b"empty"[..], &b""[..]), (b"one", b"\n"), (b"huge", &huge)] {
        c.send_bin(&[b"SET", key, value]);
        assert_eq!(c.read(), Frame::ok());
        c.send_bin(&[b"GET", key]);
        assert!(c.read() == Frame::Bulk(value.to_vec()), "GET {key:?}");
    }
    assert_eq!(
        redis.cmd(&["STRLEN", "huge"]),
        Frame::Int(huge.len() as i64)
    );

    let mut p = Raw::connect(proxy.addr());
    let mut pipeline = Vec::new();
    pipeline.extend(encode(&[b"SET", b"p-huge", &huge]));
    pipeline.extend(encode(&[b"GET", b"p-huge"]));
    pipeline.extend(encode(&[b"SET", b"p-empty", b""]));
    pipeline.extend(encode(&[b"GET", b"p-empty"]));
    pipeline.extend(encode(&[b"STRLEN", b"p-huge"]));
    pipeline.extend(encode(&[b"GET", b"p-huge"]));
    pipeline.extend(encode(&[b"GET", b"one"]));
    let mut writer = p.w.try_clone().expect("clone");
    let sender = std::thread::spawn(move || writer.write_all(&pipeline));
    assert_eq!(p.read().expect("SET"), Frame::ok());
    assert!(
        p.read().expect("GET") == Frame::Bulk(huge.clone()),
        "GET p-huge"
    );
    assert_eq!(p.read().expect("SET"), Frame::ok());
    assert_eq!(p.read().expect("GET"), Frame::Bulk(Vec::new()));
    assert_eq!(p.read().expect("STRLEN"), Frame::Int(huge.len() as i64));
    assert!(
        p.read().expect("GET") == Frame::Bulk(huge.clone()),
        "GET p-huge"
    );
    assert_eq!(p.read().expect("GET"), Frame::bulk("\n"));
    sender.join().expect("writer").expect("write pipeline");
}
