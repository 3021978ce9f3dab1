//! Auth pass-through (`[auth] mode = "passthrough"`): the proxy has no users of its own, the
//! master checks each client's `AUTH`/`HELLO AUTH`, and the client's commands run on the
//! master as that Redis user, on new masters after a failover too. Checked against
//! `redis-server` processes with `requirepass` and ACL users.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{Client, Frame, Proxy, RedisServer};

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

const PASSTHROUGH: &str = "[auth]\nmode = \"passthrough\"\n";

fn err(text: &str) -> Frame {
    Frame::Error(text.to_string())
}

/// A client straight on `redis`, authenticated with AUTH's arguments `auth`.
fn server_client(redis: &RedisServer, auth: &[&str]) -> Client {
    let mut c = redis.client();
    let mut args = vec!["AUTH"];
    args.extend_from_slice(auth);
    assert_eq!(c.cmd(&args), Frame::ok());
    c
}

/// Waits until a client authenticated with AUTH's arguments `auth` can write through `proxy`.
fn wait_writable(proxy: &Proxy, auth: &[&str], key: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    let mut args = vec!["AUTH"];
    args.extend_from_slice(auth);
    loop {
        if let Ok(mut c) = Client::try_connect(proxy.addr()) {
            if c.cmd(&args) == Frame::ok() && c.cmd(&["SET", key, "1"]) == Frame::ok() {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "proxy never became ready: {}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The users the server's connections are logged in as (`CLIENT LIST`'s `user=` fields).
fn server_users(redis: &RedisServer, admin: &[&str]) -> Vec<String> {
    let list = server_client(redis, admin).cmd(&["CLIENT", "LIST"]);
    let Frame::Bulk(b) = list else {
        panic!("{list:?}")
    };
    String::from_utf8_lossy(&b)
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("user=")))
        .map(str::to_string)
        .collect()
}

/// Redis with `requirepass` and an ACL user `app` limited to `app:*` keys; the proxy in
/// passthrough mode (its own probes log in as the ACL user `proxy`):
/// 1. Before AUTH, commands get Redis's `NOAUTH`; a wrong password gets Redis's `WRONGPASS`.
/// 2. `AUTH <password>` opens the default user; `ACL WHOAMI` says so.
/// 3. `AUTH app <pw>` runs commands as `app`: writes to `app:*` work, others get the
///    master's `NOPERM`, and the master lists connections logged in as `app`.
/// 4. A user without `INFO` and `ROLE` (`-@dangerous -@admin`) works too, on shared and
///    dedicated connections; its own `INFO` gets the master's `NOPERM`.
/// 5. `HELLO 3 AUTH app <pw>` works the same way.
/// 6. The server's password changed under the proxy (`CONFIG SET requirepass`): the new one
///    opens, the old one no longer does.
/// 7. The proxy's own password changed under it: a new user's connection gets an error that
///    says so.
/// 8. No password reaches the proxy's log.
#[test]
fn the_master_checks_credentials_and_commands_run_as_that_user() {
    let redis = RedisServer::builder()
        .password("admin-pw-31")
        .arg("user", "proxy on >proxy-pw-40 ~* &* +@all")
        .arg("user", "app on >app-pw-77 ~app:* &* +@all")
        .arg(
            "user",
            "narrow on >narrow-pw-12 ~app:* &* +@all -@dangerous -@admin",
        )
        .start();
    let config = format!("{PASSTHROUGH}[backend]\nuser = \"proxy\"\npassword = \"proxy-pw-40\"\n");
    let proxy = Proxy::builder().config(&config).nodes(&[&redis]).spawn();
    wait_writable(&proxy, &["admin-pw-31"], "__ready__");

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd(&["AUTH", "not-it"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "app", "not-it"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "admin-pw-31"]), Frame::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("default"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());

    let mut app = proxy.client();
    assert_eq!(app.cmd(&["AUTH", "app", "app-pw-77"]), Frame::ok());
    assert_eq!(app.cmd(&["ACL", "WHOAMI"]), Frame::bulk("app"));
    assert_eq!(app.cmd(&["SET", "app:1", "x"]), Frame::ok());
    let r = app.cmd(&["SET", "other", "y"]);
    assert!(r.is_error("NOPERM"), "write outside app:* as app: {r:?}");
    assert_eq!(c.cmd(&["EXISTS", "other"]), Frame::Int(0));
    assert!(
        server_users(&redis, &["admin-pw-31"]).contains(&"app".to_string()),
        "no connection of the master is logged in as app"
    );

    // A user that may not run INFO or ROLE: the proxy checks the node under its own
    // credentials, then logs the connection in as that user.
    let mut narrow = proxy.client();
    assert_eq!(narrow.cmd(&["AUTH", "narrow", "narrow-pw-12"]), Frame::ok());
    assert_eq!(narrow.cmd(&["GET", "app:1"]), Frame::bulk("x"));
    let r = narrow.cmd(&["INFO", "server"]);
    assert!(r.is_error("NOPERM"), "INFO as narrow: {r:?}");
    narrow.send(&["SUBSCRIBE", "app-news"]);
    let r = narrow.read();
    assert_eq!(r.items().first(), Some(&Frame::bulk("subscribe")), "{r:?}");

    let mut hello = proxy.client();
    let r = hello.cmd(&["HELLO", "3", "AUTH", "app", "app-pw-77"]);
    assert!(matches!(r, Frame::Map(_)), "{r:?}");
    assert_eq!(hello.cmd(&["GET", "app:1"]), Frame::bulk("x"));
    let r = proxy.client().cmd(&["HELLO", "3", "AUTH", "app", "wrong"]);
    assert_eq!(r, err(WRONGPASS));

    let mut admin = server_client(&redis, &["admin-pw-31"]);
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "requirepass", "rotated-pw-52"]),
        Frame::ok()
    );
    let mut fresh = proxy.client();
    assert_eq!(fresh.cmd(&["AUTH", "admin-pw-31"]), err(WRONGPASS));
    assert_eq!(fresh.cmd(&["AUTH", "rotated-pw-52"]), Frame::ok());
    assert_eq!(fresh.cmd(&["GET", "k"]), Frame::bulk("v"));

    // The proxy's own password changed under it: a connection for a new user cannot have
    // its node checked, and the client is told so (not that it lacks authentication).
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "late",
            "on",
            ">late-pw-8",
            "~*",
            "&*",
            "+@all"
        ]),
        Frame::ok()
    );
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "proxy", "resetpass", ">proxy-pw-changed"]),
        Frame::ok()
    );
    let mut late = proxy.client();
    assert_eq!(late.cmd(&["AUTH", "late", "late-pw-8"]), Frame::ok());
    let r = late.cmd(&["GET", "k"]);
    assert!(
        r.is_error("ERR the master refused the proxy's own credentials"),
        "{r:?}"
    );

    let log = proxy.log();
    for pw in [
        "admin-pw-31",
        "proxy-pw-40",
        "proxy-pw-changed",
        "late-pw-8",
        "app-pw-77",
        "narrow-pw-12",
        "rotated-pw-52",
    ] {
        assert!(!log.contains(pw), "log shows a password:\n{log}");
    }
}

/// A master whose default user has no password: clients need no AUTH, and `AUTH <pw>` gets
/// Redis's own answer for that case (a user name with any password opens, as on Redis).
#[test]
fn an_open_master_answers_auth_in_its_own_words() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config(PASSTHROUGH)
        .nodes(&[&redis])
        .start();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["AUTH", "anything"]), err(NOT_CONFIGURED));
    assert_eq!(c.cmd(&["AUTH", "default", "anything"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// Master and replica both know the ACL user `app`; a client logged in as `app` through the
/// proxy keeps writing while the replica is promoted by hand: the proxy's new connections to
/// the new master authenticate as `app` (its writes outside `app:*` still get `NOPERM` there)
/// and the client never authenticates again.
#[test]
fn a_new_master_gets_the_clients_own_credentials() {
    let acl = "app on >app-pw-90 ~app:* &* +@all";
    let master = RedisServer::builder().arg("user", acl).start();
    let replica = RedisServer::builder()
        .arg("user", acl)
        .replica_of(&master)
        .start();
    replica.wait_link_up();
    let proxy = Proxy::builder()
        .config(PASSTHROUGH)
        .nodes(&[&master, &replica])
        .start();
    let mut app = proxy.client();
    assert_eq!(app.cmd(&["AUTH", "app", "app-pw-90"]), Frame::ok());
    assert_eq!(app.cmd(&["SET", "app:before", "1"]), Frame::ok());

    assert_eq!(replica.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::ok());
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.cmd(&["SET", "app:after", "1"]);
        if r == Frame::ok() && replica.cmd(&["EXISTS", "app:after"]) == Frame::Int(1) {
            break;
        }
        assert!(Instant::now() < until, "proxy never moved: {r:?}");
        thread::sleep(Duration::from_millis(50));
    }
    let r = app.cmd(&["SET", "elsewhere", "1"]);
    assert!(
        r.is_error("NOPERM"),
        "write outside app:* on the new master: {r:?}"
    );
    assert_eq!(app.cmd(&["ACL", "WHOAMI"]), Frame::bulk("app"));
    let list = replica.cmd(&["CLIENT", "LIST"]);
    assert!(
        list.text().contains("user=app"),
        "no connection of the new master is logged in as app: {list:?}"
    );
}
