//! Hostile clients, over plaintext and TLS, against the client-side limits: a slowloris
//! trickling a command, a client that pipelines and never reads, a flood of connections past
//! the client limit. Each is cut off by its own limit (frame timeout, output buffer, client
//! limit) while the clients connected beside it keep being served. Hostile TLS handshakes and
//! `--check` naming an unusable TLS file are in `tests/hostile_tls.rs`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::client::{encode, TlsStream};
use support::hostile::{arrived, fill, proxy, read_until_close, tls_client, MAX_CLIENTS};
use support::tls::{client_config, Pki};
use support::{Client, Frame, RedisServer};

/// Sends `frame` one byte per 100 ms until the proxy answers or closes; returns how many
/// bytes were sent.
fn trickle<S: Read + Write>(c: &mut Client<S>, frame: &[u8]) -> usize {
    for (i, b) in frame.iter().enumerate() {
        if arrived(c.socket()) || c.try_send_raw(&[*b]).is_err() {
            return i;
        }
        thread::sleep(Duration::from_millis(100));
    }
    frame.len()
}

/// A slowloris on `c`: trickles a SET; expects the frame-timeout error, then the close,
/// before the frame was complete.
fn slowloris<S: Read + Write>(mut c: Client<S>, key: &str) {
    // One round trip first: TLS 1.3 session tickets arrive after the handshake, and must not
    // be taken for the proxy's answer.
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let value = "v".repeat(40);
    let frame = encode(&[b"SET", key.as_bytes(), value.as_bytes()]);
    let sent = trickle(&mut c, &frame);
    assert!(sent < frame.len(), "{key}: the whole frame went through");
    c.set_read_timeout(Some(Duration::from_secs(10)));
    assert_eq!(
        c.try_read().expect("an error reply before the close"),
        Frame::Error("ERR Protocol error: command not completed within the frame timeout".into()),
        "{key}"
    );
    assert!(c.closed(Duration::from_secs(10)), "{key}: not closed");
}

/// Runs SET/GET round trips on every client until `done` is set; panics on a wrong reply.
fn serve_bystanders(
    plain: &mut Client,
    tls: &mut Client<TlsStream>,
    done: impl Fn() -> bool,
) -> u64 {
    let until = Instant::now() + Duration::from_secs(60);
    let mut round = 0u64;
    while !done() {
        let v = round.to_string();
        assert_eq!(plain.cmd(&["SET", "plain-bystander", &v]), Frame::ok());
        assert_eq!(plain.cmd(&["GET", "plain-bystander"]), Frame::bulk(&v));
        assert_eq!(tls.cmd(&["SET", "tls-bystander", &v]), Frame::ok());
        assert_eq!(tls.cmd(&["GET", "tls-bystander"]), Frame::bulk(&v));
        round += 1;
        assert!(Instant::now() < until, "the hostile clients never finished");
        thread::sleep(Duration::from_millis(10));
    }
    round
}

/// `frame_timeout = "1s"`:
/// 1. Two slowloris clients, one plaintext and one over TLS, each send a SET one byte per
///    100 ms (the whole frame would take 8 s).
/// 2. Each gets `ERR Protocol error: command not completed within the frame timeout` and is
///    closed before its frame is complete; neither key reaches Redis.
/// 3. Meanwhile a plaintext and a TLS bystander do SET/GET round trips, all answered.
#[test]
fn slowloris_is_cut_at_the_frame_timeout() {
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(&redis, &pki, "frame_timeout = \"1s\"", "");
    let mut plain = proxy.client();
    let mut tls = tls_client(&proxy, &pki);

    let slow_plain = Client::connect(proxy.addr());
    let slow_tls = tls_client(&proxy, &pki);
    let threads = [
        thread::spawn(move || slowloris(slow_plain, "slow-plain")),
        thread::spawn(move || slowloris(slow_tls, "slow-tls")),
    ];
    let rounds = serve_bystanders(&mut plain, &mut tls, || {
        threads.iter().all(|t| t.is_finished())
    });
    for t in threads {
        t.join().expect("slowloris");
    }
    assert!(rounds > 0);
    assert_eq!(
        redis.cmd(&["EXISTS", "slow-plain", "slow-tls"]),
        Frame::Int(0)
    );
}

/// `output_buffer = "1mb"`, over TLS:
/// 1. A 256 KB value is stored.
/// 2. A TLS client pipelines 400 GETs of it (100 MB of replies) and never reads.
/// 3. A plaintext and a TLS bystander keep doing round trips until the greedy client is gone
///    from CLIENT LIST.
/// 4. The greedy connection is closed before it received all its replies.
#[test]
fn a_tls_client_that_never_reads_is_closed_at_the_output_buffer_limit() {
    const VALUE: usize = 256 * 1024;
    const GETS: usize = 400;
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(&redis, &pki, "output_buffer = \"1mb\"", "");
    let mut plain = proxy.client();
    let mut tls = tls_client(&proxy, &pki);
    assert_eq!(plain.cmd(&["SET", "big", &"v".repeat(VALUE)]), Frame::ok());

    let mut greedy = tls_client(&proxy, &pki);
    let Frame::Int(id) = greedy.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is not an integer");
    };
    let mut gets = Vec::new();
    for _ in 0..GETS {
        gets.extend(encode(&[b"GET", b"big"]));
    }
    greedy.send_raw(&gets);

    let gone = || {
        let mut c = proxy.client();
        !c.cmd(&["CLIENT", "LIST"])
            .text()
            .contains(&format!("id={id} "))
    };
    serve_bystanders(&mut plain, &mut tls, gone);
    let got = greedy.read_to_close(Duration::from_secs(20));
    let got = got.expect("the greedy client's connection was not closed");
    assert!(
        got < VALUE * GETS,
        "the greedy client received all {got} bytes"
    );
    assert_eq!(tls.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// `max_clients = 8`, every slot taken by 4 plaintext and 4 TLS clients:
/// 1. 4 threads open 25 plaintext connections each, as fast as they can, keeping them open.
/// 2. Every one reads exactly `-ERR max number of clients reached` and is closed (each read
///    under a 5 s deadline).
/// 3. 10 TLS connections on the TLS port are closed without a completed handshake and
///    without plaintext (as Redis drops TLS clients over the limit without a word).
/// 4. The 8 clients keep working throughout; once one leaves, a new client is served.
#[test]
fn a_flood_past_max_clients_is_refused_and_the_served_clients_keep_working() {
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(&redis, &pki, "max_clients = 8", "");
    let pong = Frame::Simple("PONG".into());
    let mut plain = fill(4, || {
        let mut c = Client::try_connect(proxy.addr()).ok()?;
        (c.cmd(&["PING"]) == pong).then_some(c)
    });
    let mut tls = fill(4, || {
        let config = client_config(pki.ca(), None);
        let mut c = Client::try_connect_tls(proxy.tls_addr(), config, "127.0.0.1").ok()?;
        c.send(&["PING"]);
        matches!(c.try_read(), Ok(f) if f == pong).then_some(c)
    });

    let addr = proxy.addr();
    let flood: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut open = Vec::new();
                for i in 0..25 {
                    let mut s =
                        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
                    let got = read_until_close(&mut s, Duration::from_secs(5));
                    let got = got.unwrap_or_else(|| panic!("flood {t}/{i} not closed"));
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        format!("-{MAX_CLIENTS}\r\n"),
                        "flood {t}/{i}"
                    );
                    open.push(s);
                }
            })
        })
        .collect();
    let mut round = 0;
    while !flood.iter().all(|t| t.is_finished()) {
        for c in plain.iter_mut() {
            assert_eq!(c.cmd(&["INCR", "during-flood"]), Frame::Int(round + 1));
            round += 1;
        }
        for c in tls.iter_mut() {
            assert_eq!(c.cmd(&["INCR", "during-flood"]), Frame::Int(round + 1));
            round += 1;
        }
    }
    for t in flood {
        t.join().expect("flood thread");
    }

    let config = client_config(pki.ca(), None);
    for i in 0..10 {
        let r = Client::try_connect_tls(proxy.tls_addr(), Arc::clone(&config), "127.0.0.1");
        let e = r
            .err()
            .unwrap_or_else(|| panic!("TLS flood {i} completed a handshake"));
        use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
        assert!(
            matches!(e.kind(), ConnectionReset | UnexpectedEof | BrokenPipe),
            "TLS flood {i} not simply closed (plaintext on the TLS port?): {e}"
        );
    }

    for (i, c) in plain.iter_mut().enumerate() {
        let key = format!("plain-{i}");
        assert_eq!(c.cmd(&["SET", &key, "v"]), Frame::ok());
        assert_eq!(c.cmd(&["GET", &key]), Frame::bulk("v"));
    }
    for (i, c) in tls.iter_mut().enumerate() {
        let key = format!("tls-{i}");
        assert_eq!(c.cmd(&["SET", &key, "v"]), Frame::ok());
        assert_eq!(c.cmd(&["GET", &key]), Frame::bulk("v"));
    }
    drop(plain.pop());
    fill(1, || {
        let mut c = Client::try_connect(proxy.addr()).ok()?;
        (c.cmd(&["PING"]) == pong).then_some(c)
    });
}
