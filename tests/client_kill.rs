//! `CLIENT KILL` and `CLIENT LIST TYPE` act on the proxy's own clients, consistently with the
//! ids and addresses `CLIENT LIST` and `CLIENT ID` report (the server's connections carry many
//! clients at once and are never killed for one of them).

mod support;

use std::time::Duration;

use support::{Client, Frame, Proxy, RedisServer};

fn id_of(c: &mut Client) -> i64 {
    match c.cmd(&["CLIENT", "ID"]) {
        Frame::Int(id) => id,
        other => panic!("CLIENT ID answered {other:?}"),
    }
}

/// The `addr=` of client `id` in `CLIENT LIST`.
fn addr_of(c: &mut Client, id: i64) -> String {
    let list = c.cmd(&["CLIENT", "LIST", "ID", &id.to_string()]).text();
    list.split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr in {list:?}"))
        .to_string()
}

/// 1. Without `allow_commands`, CLIENT KILL is refused.
/// 2. Allowed: `CLIENT KILL ID <id>` closes that proxy client and answers 1; the killer and
///    the server's shared connection are unaffected (another client's commands still work).
/// 3. The old form `CLIENT KILL addr:port` answers OK for a client's address, `No such
///    client` for an unknown one.
/// 4. `CLIENT KILL USER default` kills every other client (SKIPME yes by default) and answers
///    their count; `SKIPME no` includes the caller, which gets its reply and is closed.
/// 5. `CLIENT LIST TYPE master` lists nobody; `TYPE normal` lists the caller; an unknown type
///    is Redis's error.
#[test]
fn client_kill_acts_on_proxy_clients() {
    let redis = RedisServer::start();
    let guarded = Proxy::start(&[&redis]);
    assert!(matches!(
        guarded.client().cmd(&["CLIENT", "KILL", "ID", "1"]),
        Frame::Error(e) if e.contains("allow_commands")
    ));

    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--allow-commands", "CLIENT|KILL"])
        .start();
    let mut killer = proxy.client();
    let mut bystander = proxy.client();
    let mut victim = proxy.client();
    let victim_id = id_of(&mut victim);
    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", &victim_id.to_string()]),
        Frame::Int(1)
    );
    assert!(
        victim.closed(Duration::from_secs(5)),
        "the victim stays open"
    );
    assert_eq!(bystander.cmd(&["SET", "kill:k", "1"]), Frame::ok());
    assert_eq!(killer.cmd(&["GET", "kill:k"]), Frame::bulk("1"));

    let mut old = proxy.client();
    let old_id = id_of(&mut old);
    let addr = addr_of(&mut killer, old_id);
    assert_eq!(killer.cmd(&["CLIENT", "KILL", &addr]), Frame::ok());
    assert!(old.closed(Duration::from_secs(5)));
    assert!(matches!(
        killer.cmd(&["CLIENT", "KILL", "127.0.0.1:1"]),
        Frame::Error(e) if e == "ERR No such client"
    ));
    assert!(matches!(
        killer.cmd(&["CLIENT", "KILL", "ID", "0"]),
        Frame::Error(e) if e.contains("greater than 0")
    ));

    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "USER", "default"]),
        Frame::Int(1),
        "the bystander, not the killer"
    );
    assert!(bystander.closed(Duration::from_secs(5)));
    assert_eq!(killer.cmd(&["PING"]), Frame::Simple("PONG".into()));

    assert_eq!(killer.cmd(&["CLIENT", "LIST", "TYPE", "master"]).text(), "");
    let own = id_of(&mut killer);
    assert!(killer
        .cmd(&["CLIENT", "LIST", "TYPE", "normal"])
        .text()
        .contains(&format!("id={own} ")));
    assert!(matches!(
        killer.cmd(&["CLIENT", "LIST", "TYPE", "weird"]),
        Frame::Error(e) if e.contains("Unknown client type")
    ));

    assert_eq!(
        killer.cmd(&["CLIENT", "KILL", "ID", &own.to_string(), "SKIPME", "no"]),
        Frame::Int(1)
    );
    assert!(killer.closed(Duration::from_secs(5)));
    assert_eq!(proxy.client().cmd(&["GET", "kill:k"]), Frame::bulk("1"));
}

/// `CLIENT UNBLOCK <proxy id>` (where allowed) releases that proxy client's blocking command:
/// with TIMEOUT it gets the command's timeout answer (null), with ERROR Redis's `-UNBLOCKED`
/// error, as with Redis itself; an id that blocks on nothing answers 0.
#[test]
fn client_unblock_releases_a_proxy_client() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .nodes(&[&redis])
        .args(&["--allow-commands", "CLIENT|UNBLOCK"])
        .start();
    let mut blocked = proxy.client();
    let id = id_of(&mut blocked).to_string();
    let mut other = proxy.client();
    let unblock_until_done = |other: &mut Client, mode: &str| {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while other.cmd(&["CLIENT", "UNBLOCK", &id, mode]) != Frame::Int(1) {
            assert!(std::time::Instant::now() < until, "never unblocked");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    blocked.send(&["BLPOP", "unblock:l", "0"]);
    unblock_until_done(&mut other, "TIMEOUT");
    assert_eq!(blocked.read(), Frame::Null);
    blocked.send(&["BLPOP", "unblock:l", "0"]);
    unblock_until_done(&mut other, "ERROR");
    match blocked.read() {
        Frame::Error(e) => assert!(e.starts_with("UNBLOCKED"), "{e}"),
        other => panic!("BLPOP unblocked with ERROR answered {other:?}"),
    }
    assert_eq!(blocked.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(other.cmd(&["CLIENT", "UNBLOCK", "999999"]), Frame::Int(0));
    assert!(matches!(
        other.cmd(&["CLIENT", "UNBLOCK", &id, "SOON"]),
        Frame::Error(e) if e.contains("TIMEOUT or ERROR")
    ));
}
