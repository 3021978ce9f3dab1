//! Bad input from clients: malformed frames get Redis's own `Protocol error: ...` reply and close
//! only the offending connection; truncated frames cost nothing; inline commands work as in
//! Redis; a storm of random bytes on many connections leaves the proxy alive, serving a
//! well-behaved client, and with bounded memory; frames announcing huge lengths do not make
//! the proxy allocate them. Replies are compared with a reference `redis-server` where Redis
//! defines the answer.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::rng::Rng;
use support::{Client, Frame, Proxy, RedisServer};

/// Sends `raw` on a fresh connection and returns everything received until the peer closes
/// (`true`) or stays silent for `quiet` (`false`).
fn exchange(addr: SocketAddr, raw: &[u8], quiet: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(raw).expect("write");
    s.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// Number of clients the proxy lists (the asking client included).
fn client_count(c: &mut Client) -> usize {
    c.cmd(&["CLIENT", "LIST"]).text().lines().count()
}

/// Polls CLIENT LIST until only `n` clients are left.
fn wait_clients(c: &mut Client, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while client_count(c) != n {
        assert!(
            Instant::now() < until,
            "clients never left: {}",
            c.cmd(&["CLIENT", "LIST"]).text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The proxy's memory as reported by /proc: (VmRSS, VmSize) in KiB. The process is found by
/// its `--listen` argument.
fn proxy_mem(proxy: &Proxy) -> (u64, u64) {
    let listen = format!("127.0.0.1:{}", proxy.port);
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_proxy = args
            .windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes());
        if !is_proxy {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        return (field("VmRSS:"), field("VmSize:"));
    }
    panic!("proxy process not found");
}

/// Malformed frames (`*abc`, `*1` then `+x`, `$-5`, `$abc`, an unbalanced quote, a `*0` then
/// garbage header):
/// 1. Each, on its own connection, gets exactly the bytes a `redis-server` sends for it (an
///    `-ERR Protocol error: ...` line) and the connection is closed.
/// 2. A client connected throughout keeps working and is never closed.
#[test]
fn malformed_frames_get_redis_errors_and_close_only_that_client() {
    let redis = RedisServer::start();
    let reference = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut bystander = proxy.client();
    assert_eq!(bystander.cmd(&["SET", "k", "v"]), Frame::ok());
    let quiet = Duration::from_secs(5);
    for raw in [
        &b"*abc\r\n"[..],
        b"*1\r\n+x\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n$abc\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"SET k \"abc\r\n",
        b"*0\r\n*-1\r\n*x\r\n",
    ] {
        let (expected, closed) = exchange(reference.addr(), raw, quiet);
        assert!(closed, "reference did not close for {raw:?}");
        assert!(expected.starts_with(b"-ERR Protocol error: "));
        let (got, closed) = exchange(proxy.addr(), raw, quiet);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "reply to {raw:?}"
        );
        assert!(closed, "proxy did not close for {raw:?}");
        assert_eq!(bystander.cmd(&["GET", "k"]), Frame::bulk("v"));
    }
    assert_eq!(client_count(&mut bystander), 1);
}

/// Truncated frames:
/// 1. 40 connections each send half of a command (multibulk cut in a header, in a payload,
///    after the header, an inline command without newline) and close.
/// 2. The proxy drops them all (CLIENT LIST back to one), nothing of them reached Redis, a
///    bystander keeps working.
/// 3. A command sent one byte per write is executed normally.
#[test]
fn truncated_frames_cost_nothing() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut bystander = proxy.client();
    let halves: [&[u8]; 4] = [
        b"*3\r\n$3\r\nSET\r\n$4\r\ncut1\r\n$10\r\nabc",
        b"*3\r\n$3\r\nSET\r\n$4\r\ncut2\r\n$1",
        b"*5\r\n",
        b"SET cut3 value",
    ];
    let mut open = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(proxy.addr()).expect("connect");
        s.write_all(halves[i % halves.len()]).expect("write");
        open.push(s);
        if i % 10 == 9 {
            assert_eq!(bystander.cmd(&["PING"]), Frame::Simple("PONG".into()));
        }
    }
    drop(open);
    wait_clients(&mut bystander, 1);
    assert_eq!(
        redis.cmd(&["EXISTS", "cut1", "cut2", "cut3"]),
        Frame::Int(0)
    );

    let mut slow = TcpStream::connect(proxy.addr()).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for b in b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$5\r\nbytes\r\n" {
        slow.write_all(&[*b]).expect("write");
        thread::sleep(Duration::from_millis(2));
    }
    let mut reply = [0u8; 5];
    slow.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"+OK\r\n");
    assert_eq!(bystander.cmd(&["GET", "slow"]), Frame::bulk("bytes"));
}

/// Inline commands, compared byte for byte with a `redis-server`: PING, SET with a quoted
/// value containing a space, GET, ECHO with escapes, a bare `\n` line end, empty lines, and
/// inline mixed with multibulk in one write.
#[test]
fn inline_commands_work_as_in_redis() {
    let redis = RedisServer::start();
    let reference = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let raw = b"PING\r\nSET k \"a b\"\r\nGET k\r\nECHO \"tab\\there\\x41\"\r\nGET k\n\r\n\r\n\
*2\r\n$3\r\nGET\r\n$1\r\nk\r\nSET k2 'it\\'s'\r\nGET k2\r\nPING hello\r\n";
    let replies = 9;
    let mut expected = Client::connect(reference.addr());
    let mut got = proxy.client();
    expected.send_raw(raw);
    got.send_raw(raw);
    for i in 0..replies {
        assert_eq!(got.read(), expected.read(), "reply {i}");
    }
    assert_eq!(redis.cmd(&["GET", "k"]), Frame::bulk("a b"));
    assert_eq!(got.cmd(&["GET", "k2"]), Frame::bulk("it's"));
}

/// Random bytes:
/// 1. 20 threads open connections for ~8 s and throw random bytes at the proxy (pure noise,
///    noise after a `*` header, noise after a valid command prefix), then close.
/// 2. Meanwhile a well-behaved client does SET/GET round trips; every one is answered right.
/// 3. The proxy stays alive; its RSS, sampled before, during and after, stays under 200 MB and
///    does not keep growing once the storm is over.
#[test]
fn random_bytes_storm_leaves_the_proxy_serving() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&[&redis]);
    let addr = proxy.addr();
    let mut good = proxy.client();
    good.set_read_timeout(Some(Duration::from_secs(15)));
    assert_eq!(good.cmd(&["SET", "warm", "1"]), Frame::ok());
    let rss_before = proxy.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicU64::new(0));
    let storm: Vec<_> = (0..20u64)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let connections = Arc::clone(&connections);
            thread::spawn(move || {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let mut data = match rng.below(3) {
                        0 => Vec::new(),
                        1 => format!("*{}\r\n", rng.below(100_000)).into_bytes(),
                        _ => b"*3\r\n$3\r\nSET\r\n$5\r\nnoise\r\n".to_vec(),
                    };
                    let len = 1 + rng.below(8192) as usize;
                    data.extend(rng.bytes(len));
                    let _ = s.write_all(&data);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(8) {
        let v = format!("value-{round}");
        assert_eq!(good.cmd(&["SET", "good", &v]), Frame::ok(), "round {round}");
        assert_eq!(good.cmd(&["GET", "good"]), Frame::bulk(&v), "round {round}");
        round += 1;
        let third = (started.elapsed().as_millis() / 2667) as usize;
        if samples.len() <= third && samples.len() < 3 {
            samples.push(proxy.rss_kib());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in storm {
        h.join().expect("storm thread");
    }
    assert!(proxy.alive(), "proxy died: {}", proxy.log());
    let connections = connections.load(Ordering::Relaxed);
    assert!(connections >= 20, "only {connections} storm connections");
    wait_clients(&mut good, 1);
    let rss_after = proxy.rss_kib();
    let rss_settled = {
        for _ in 0..200 {
            assert_eq!(
                good.cmd(&["GET", "good"]),
                Frame::bulk(&format!("value-{}", round - 1))
            );
        }
        proxy.rss_kib()
    };
    eprintln!("{connections} storm connections, {round} good rounds; rss KiB: before {rss_before}, during {samples:?}, after {rss_after}, settled {rss_settled}");
    assert!(rss_after < 200 * 1024, "RSS after storm {rss_after} KiB");
    let peak_during = samples.iter().copied().max().unwrap_or(rss_before);
    assert!(
        rss_settled <= peak_during.max(rss_after) + 16 * 1024,
        "RSS keeps growing after the storm: during {samples:?}, after {rss_after}, then {rss_settled}"
    );
    assert!(proxy.alive(), "proxy died: {}", proxy.log());
}

/// Frames announcing huge lengths (`*2147483647`, a `$536870911` bulk):
/// 1. 100 connections send such headers (and a few payload bytes) and stay open.
/// 2. The proxy keeps serving a bystander; its RSS rises by less than 30 MB and its virtual
///    size by less than 1 GB (nothing is allocated for the announced lengths).
/// 3. After the connections close, the proxy is alive and RSS is still within the bound.
#[test]
fn huge_length_claims_allocate_nothing() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&[&redis]);
    let mut bystander = proxy.client();
    assert_eq!(bystander.cmd(&["SET", "k", "v"]), Frame::ok());
    let (rss0, vsz0) = proxy_mem(&proxy);

    let mut open = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(proxy.addr()).expect("connect");
        let raw: &[u8] = match i % 3 {
            0 => b"*2147483647\r\n$3\r\nSET\r\n",
            1 => b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870911\r\nabcdef",
            _ => b"*2\r\n$536870911\r\nxyz",
        };
        s.write_all(raw).expect("write");
        open.push(s);
    }
    wait_clients(&mut bystander, 101);
    for _ in 0..20 {
        assert_eq!(bystander.cmd(&["GET", "k"]), Frame::bulk("v"));
    }
    let (rss1, vsz1) = proxy_mem(&proxy);
    eprintln!("before: rss {rss0} vsz {vsz0}; open: rss {rss1} vsz {vsz1}");
    assert!(
        rss1 < rss0 + 30 * 1024,
        "RSS grew from {rss0} to {rss1} KiB"
    );
    assert!(
        vsz1 < vsz0 + 1024 * 1024,
        "VmSize grew from {vsz0} to {vsz1} KiB"
    );

    drop(open);
    wait_clients(&mut bystander, 1);
    assert!(proxy.alive(), "proxy died: {}", proxy.log());
    assert_eq!(redis.cmd(&["GET", "k"]), Frame::bulk("v"));
    let rss2 = proxy.rss_kib();
    assert!(
        rss2 < rss0 + 30 * 1024,
        "RSS grew from {rss0} to {rss2} KiB"
    );
}
