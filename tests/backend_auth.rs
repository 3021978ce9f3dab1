//! The proxy's own credentials on Redis (`[backend]` user and password, and per-user
//! `backend_user` / `backend_password`), checked against `redis-server` processes that require
//! them: clients never need these credentials, cannot use them to log in to the proxy, and the
//! proxy's log never shows them.

mod support;

use std::time::{Duration, Instant};

use support::{Client, Frame, Proxy, ProxyBuilder, RedisServer};

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

fn err(text: &str) -> Frame {
    Frame::Error(text.to_string())
}

/// Spawns a proxy that requires authentication and waits until a client that authenticates
/// with `auth` (AUTH's arguments) can write through it.
fn start_with_auth(builder: ProxyBuilder, auth: &[&str]) -> Proxy {
    let proxy = builder.spawn();
    let until = Instant::now() + Duration::from_secs(15);
    let mut args = vec!["AUTH"];
    args.extend_from_slice(auth);
    loop {
        if let Ok(mut c) = Client::try_connect(proxy.addr()) {
            assert_eq!(c.cmd(&args), Frame::ok(), "AUTH refused: {}", proxy.log());
            if c.cmd(&["SET", "__ready__", "1"]) == Frame::ok() {
                return proxy;
            }
        }
        assert!(
            Instant::now() < until,
            "proxy never became ready: {}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An authenticated client on a server that requires `pw`.
fn server_client(redis: &RedisServer, pw: &str) -> Client {
    let mut c = redis.client();
    assert_eq!(c.cmd(&["AUTH", pw]), Frame::ok());
    c
}

/// Backend credentials (Redis with requirepass, proxy with `[backend] password`):
/// 1. Clients need no password; SET/GET work and the data is on Redis.
/// 2. A client's AUTH with the backend password is answered by the proxy (no password is
///    configured for clients), never forwarded to Redis.
/// 3. Redis restarts: the proxy reconnects with its credentials and traffic works again.
/// 4. The backend password never appears in the proxy's log.
#[test]
fn backend_password_is_used_and_never_logged() {
    const PW: &str = "backend-pw-5d1e";
    let mut redis = RedisServer::builder().password(PW).start();
    let proxy = Proxy::builder()
        .config(&format!("[backend]\npassword = \"{PW}\"\n"))
        .nodes(&[&redis])
        .start();

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(
        server_client(&redis, PW).cmd(&["GET", "k"]),
        Frame::bulk("v")
    );
    assert_eq!(c.cmd(&["AUTH", PW]), err(NOT_CONFIGURED));
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("default"));

    redis.restart();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = proxy.client();
        if c.cmd(&["SET", "k2", "v2"]) == Frame::ok() {
            break;
        }
        assert!(
            Instant::now() < until,
            "no traffic after restart: {}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server_client(&redis, PW).cmd(&["GET", "k2"]),
        Frame::bulk("v2")
    );

    let log = proxy.log();
    assert!(!log.contains(PW), "log shows the backend password:\n{log}");
}

/// Both sides protected (clients need `client-pw`, Redis needs `backend-pw`):
/// 1. The backend password does not open the proxy (WRONGPASS).
/// 2. The client password does; traffic works.
/// 3. A proxy with a wrong backend password answers errors (not hangs), writes nothing, and
///    never logs that password.
#[test]
fn client_and_backend_passwords_are_separate() {
    let redis = RedisServer::builder().password("backend-pw-e2").start();
    let config = "[auth]\npassword = \"client-pw-c9\"\n[backend]\npassword = \"backend-pw-e2\"\n";
    let proxy = start_with_auth(
        Proxy::builder().config(config).nodes(&[&redis]),
        &["client-pw-c9"],
    );
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["AUTH", "backend-pw-e2"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd(&["AUTH", "client-pw-c9"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(
        server_client(&redis, "backend-pw-e2").cmd(&["GET", "k"]),
        Frame::bulk("v")
    );

    let wrong = Proxy::builder()
        .config("[backend]\npassword = \"wrong-backend-pw-77\"\n")
        .nodes(&[&redis])
        .spawn();
    let mut w = Client::connect(wrong.addr());
    w.set_read_timeout(Some(Duration::from_secs(20)));
    for _ in 0..3 {
        let r = w.cmd(&["SET", "k", "from-wrong"]);
        assert!(matches!(r, Frame::Error(_)), "{r:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        server_client(&redis, "backend-pw-e2").cmd(&["GET", "k"]),
        Frame::bulk("v")
    );
    let log = wrong.log();
    assert!(
        !log.contains("wrong-backend-pw-77"),
        "log shows a password:\n{log}"
    );
}

/// Per-user backend credentials (Redis has an ACL user `reader` without write permission; the
/// proxy user `ro` runs its commands as `reader`, everyone else as the `[backend]` default):
/// 1. The default proxy user writes through the proxy.
/// 2. After AUTH ro, reads work and a write gets Redis's NOPERM; the value is unchanged.
/// 3. Back to the default user (AUTH default), writes work again.
/// 4. Neither backend password appears in the proxy's log.
#[test]
fn per_user_backend_credentials_apply_redis_acls() {
    let redis = RedisServer::builder()
        .password("admin-pw-0b")
        .arg("user", "reader on >reader-pw-a4 ~* &* +@all -@write")
        .start();
    let config = "[backend]\npassword = \"admin-pw-0b\"\n\
                  [[auth.users]]\nname = \"ro\"\npassword = \"ro-pw\"\n\
                  backend_user = \"reader\"\nbackend_password = \"reader-pw-a4\"\n";
    let proxy = Proxy::builder().config(config).nodes(&[&redis]).start();

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["AUTH", "ro", "ro-pw"]), Frame::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("ro"));
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    let r = c.cmd(&["SET", "k", "changed"]);
    assert!(r.is_error("NOPERM"), "write as reader: {r:?}");
    assert_eq!(
        server_client(&redis, "admin-pw-0b").cmd(&["GET", "k"]),
        Frame::bulk("v")
    );

    assert_eq!(c.cmd(&["AUTH", "default", "anything"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "k", "changed"]), Frame::ok());
    assert_eq!(
        server_client(&redis, "admin-pw-0b").cmd(&["GET", "k"]),
        Frame::bulk("changed")
    );

    let log = proxy.log();
    assert!(!log.contains("admin-pw-0b"), "log shows a password:\n{log}");
    assert!(
        !log.contains("reader-pw-a4"),
        "log shows a password:\n{log}"
    );
}

/// A proxy user whose backend credentials the master refuses (a wrong password) gets the
/// master's own `WRONGPASS`, at once and marked as the proxy's, not "the master cannot be
/// reached" after a hold; the other users are unaffected.
#[test]
fn refused_backend_credentials_reach_the_client() {
    let redis = RedisServer::builder().password("admin-pw-7c").start();
    let config = "[backend]\npassword = \"admin-pw-7c\"\n\
                  [[auth.users]]\nname = \"bad\"\npassword = \"bad-pw\"\n\
                  backend_user = \"default\"\nbackend_password = \"not-the-password\"\n";
    let proxy = Proxy::builder().config(config).nodes(&[&redis]).start();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["AUTH", "bad", "bad-pw"]), Frame::ok());
    let r = c.cmd(&["GET", "k"]);
    assert!(r.is_error("WRONGPASS"), "{r:?}");
    assert!(format!("{r:?}").contains("(proxy"), "{r:?}");
    let mut other = proxy.client();
    assert_eq!(other.cmd(&["SET", "k", "v"]), Frame::ok());
}
