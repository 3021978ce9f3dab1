//! Ordinary traffic through the proxy: pipelines, many clients, value sizes, databases.

mod support;

use std::thread;

use support::client::encode_strs;
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

/// Deterministic pseudo-random numbers (xorshift), so that a failing mix can be replayed.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One command of the mix: mostly ordinary reads and writes (the proxy's synchronous path),
/// with commands the proxy answers or tracks itself in between (PING, ECHO, an arity error,
/// CLIENT REPLY SKIP, SELECT, a transaction), each of which sends the rest of the pipeline
/// through its general path for a while.
fn mixed_command(m: &mut Mix) -> Vec<Vec<u8>> {
    let key = format!("k{}", m.below(8));
    let val = format!("v{}", m.below(1000));
    let words: Vec<String> = match m.below(20) {
        0..=4 => vec!["SET".into(), key, val],
        5..=8 => vec!["GET".into(), key],
        9..=10 => vec!["INCR".into(), format!("n{}", m.below(3))],
        11 => vec!["RPUSH".into(), "list".into(), val],
        12 => vec!["LRANGE".into(), "list".into(), "0".into(), "2".into()],
        13 => vec!["PING".into()],
        14 => vec!["ECHO".into(), val],
        15 => vec!["ECHO".into()],
        16 => vec!["SELECT".into(), m.below(2).to_string()],
        17 => {
            return vec![
                encode_strs(&["CLIENT", "REPLY", "SKIP"]),
                encode_strs(&["SET", &key, &val]),
            ]
        }
        18 => {
            return vec![
                encode_strs(&["MULTI"]),
                encode_strs(&["INCR", "tx"]),
                encode_strs(&["GET", &key]),
                encode_strs(&["EXEC"]),
            ]
        }
        _ => vec!["DEL".into(), key],
    };
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    vec![encode_strs(&refs)]
}

/// Sends `stream` in pieces of random length (frames cut anywhere), then reads `replies`
/// frames.
fn run_mix(c: &mut support::Client, stream: &[u8], replies: usize, m: &mut Mix) -> Vec<Frame> {
    let mut at = 0;
    while at < stream.len() {
        let n = (1 + m.below(300) as usize).min(stream.len() - at);
        c.send_raw(&stream[at..at + n]);
        at += n;
    }
    (0..replies).map(|_| c.read()).collect()
}

/// The same pipeline of mixed commands, cut into the same random pieces, gets the same replies
/// through the proxy as from Redis itself: the synchronous path for ordinary commands and the
/// general path for the rest hand over to each other without reordering, losing or
/// duplicating anything.
#[test]
fn mixed_pipelines_get_the_replies_redis_gives() {
    let direct = RedisServer::start();
    let behind = RedisServer::start();
    let proxy = Proxy::start(&[&behind]);
    let mut to_redis = direct.client();
    let mut to_proxy = proxy.client();
    for round in 0..20u64 {
        let mut m = Mix(0x9e37_79b9_7f4a_7c15 ^ (round + 1));
        let mut stream = Vec::new();
        let mut replies = 0;
        for _ in 0..500 {
            let cmds = mixed_command(&mut m);
            // CLIENT REPLY SKIP silences itself and the command after it.
            let skip = cmds.len() == 2;
            replies += if skip { 0 } else { cmds.len() };
            stream.extend(cmds.concat());
        }
        // Back to database 0 and a marker, so that both sides end in the same state.
        stream.extend(encode_strs(&["SELECT", "0"]));
        stream.extend(encode_strs(&["ECHO", "end"]));
        replies += 2;
        let seed = m.0;
        let want = run_mix(&mut to_redis, &stream, replies, &mut Mix(seed));
        let got = run_mix(&mut to_proxy, &stream, replies, &mut Mix(seed));
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(g, w, "round {round}, reply {i}");
        }
        assert_eq!(got.last(), Some(&Frame::bulk("end")));
    }
}
