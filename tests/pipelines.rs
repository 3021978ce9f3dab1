//! Ordinary traffic through the proxy: pipelines, many clients, value sizes, databases.

mod support;

use std::thread;

use support::{Frame, Proxy, RedisServer};

/// A single command, then a 10,000-command pipeline whose replies must come back complete and
/// in order.
#[test]
fn pipelines_of_one_and_ten_thousand() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "one", "1"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "one"]), Frame::bulk("1"));

    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend(support::client::encode(&[
            b"RPUSH",
            b"list",
            i.to_string().as_bytes(),
        ]));
    }
    c.send_raw(&batch);
    for i in 0..10_000 {
        assert_eq!(c.read(), Frame::Int(i + 1), "reply {i}");
    }
    let last = c.cmd(&["LINDEX", "list", "-1"]);
    assert_eq!(last, Frame::bulk("9999"));
}

/// 200 clients each pipeline INCRs on their own key and GETs interleaved; every client must
/// see its own replies in its own order.
#[test]
fn two_hundred_clients_keep_their_order() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let addr = proxy.addr();
    let handles: Vec<_> = (0..200)
        .map(|n| {
            thread::spawn(move || {
                let mut c = support::Client::connect(addr);
                let key = format!("counter:{n}");
                for round in 0..5 {
                    let mut raw = Vec::new();
                    for _ in 0..20 {
                        raw.extend(support::client::encode(&[b"INCR", key.as_bytes()]));
                        raw.extend(support::client::encode(&[b"GET", key.as_bytes()]));
                    }
                    c.send_raw(&raw);
                    for i in 0..20 {
                        let expect = round * 20 + i + 1;
                        assert_eq!(c.read(), Frame::Int(expect));
                        assert_eq!(c.read(), Frame::bulk(&expect.to_string()));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}
