//! Client authentication through the proxy, checked against real `redis-server` processes: the
//! default password (Redis's `requirepass`), named users with clear and SHA-256 passwords,
//! HELLO AUTH, passwords read from the environment and from files, and the limits Redis puts on
//! clients that have not authenticated yet. The proxy's own credentials on Redis are covered
//! in `backend_auth.rs`.

mod support;

use std::time::{Duration, Instant};

use support::client::{encode, encode_strs};
use support::{Client, Frame, Proxy, ProxyBuilder, RedisServer};

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
/// SHA-256 of `hashed-pw` (`printf %s hashed-pw | sha256sum`).
const HASHED_PW_SHA256: &str = "d53a3e619328665a84a4cf3c1057b09eb45c71915d361a475c656359e9130530";

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

/// Default password:
/// 1. PING, GET, SET and ACL WHOAMI before AUTH all get NOAUTH; the SET never reaches Redis.
/// 2. AUTH with a wrong password, and AUTH default with a wrong password, get WRONGPASS and
///    leave the client unauthenticated.
/// 3. AUTH with the right password gets +OK; SET/GET work and land on Redis; WHOAMI is default.
/// 4. AUTH with too many arguments is a syntax error; a failed AUTH after a good one keeps the
///    client authenticated (as in Redis).
/// 5. AUTH default <pw> works on a new connection; QUIT before AUTH answers +OK and closes.
#[test]
fn default_password_gates_every_command() {
    let redis = RedisServer::start();
    let proxy = start_with_auth(
        Proxy::builder()
            .config("[auth]\npassword = \"s3cret\"\n")
            .nodes(&[&redis]),
        &["s3cret"],
    );

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["PING"]), err(NOAUTH));
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd(&["SET", "k", "early"]), err(NOAUTH));
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), err(NOAUTH));
    assert_eq!(redis.cmd(&["EXISTS", "k"]), Frame::Int(0));

    assert_eq!(c.cmd(&["AUTH", "wrong"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "default", "wrong"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));

    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Frame::ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("default"));
    assert_eq!(redis.cmd(&["GET", "k"]), Frame::bulk("v"));

    assert_eq!(c.cmd(&["AUTH", "a", "b", "c"]), err("ERR syntax error"));
    assert_eq!(c.cmd(&["AUTH", "wrong"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));

    let mut d = proxy.client();
    assert_eq!(d.cmd(&["AUTH", "default", "s3cret"]), Frame::ok());
    assert_eq!(d.cmd(&["PING"]), Frame::Simple("PONG".into()));

    let mut q = proxy.client();
    assert_eq!(q.cmd(&["QUIT"]), Frame::ok());
    assert!(q.closed(Duration::from_secs(5)), "QUIT did not close");
}

/// HELLO with AUTH:
/// 1. HELLO 3 without AUTH before authenticating gets NOAUTH (the HELLO variant).
/// 2. HELLO 3 AUTH default <wrong> gets WRONGPASS; the client stays unauthenticated.
/// 3. HELLO 3 AUTH default <pw> answers the RESP3 map with proto 3; commands work and replies
///    are RESP3 (HGETALL is a map).
/// 4. HELLO 2 AUTH <named user> <pw> switches back to RESP2 as that user (ACL WHOAMI).
#[test]
fn hello_auth_authenticates_and_switches_protocol() {
    let redis = RedisServer::start();
    let config =
        "[auth]\npassword = \"s3cret\"\n[[auth.users]]\nname = \"app\"\npassword = \"app-pw\"\n";
    let proxy = start_with_auth(
        Proxy::builder().config(config).nodes(&[&redis]),
        &["s3cret"],
    );

    let mut c = proxy.client();
    let r = c.cmd(&["HELLO", "3"]);
    assert!(r.is_error("NOAUTH HELLO must be called"), "{r:?}");
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]),
        err(WRONGPASS)
    );
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));

    let hello = c.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    let Frame::Map(pairs) = &hello else {
        panic!("HELLO 3 is not a map: {hello:?}");
    };
    assert!(
        pairs.contains(&(Frame::bulk("proto"), Frame::Int(3))),
        "{hello:?}"
    );
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Frame::Int(1));
    assert_eq!(
        c.cmd(&["HGETALL", "h"]),
        Frame::Map(vec![(Frame::bulk("f"), Frame::bulk("v"))])
    );

    let hello = c.cmd(&["HELLO", "2", "AUTH", "app", "app-pw"]);
    assert!(matches!(hello, Frame::Array(_)), "{hello:?}");
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("app"));
    assert_eq!(
        c.cmd(&["HGETALL", "h"]),
        Frame::Array(vec![Frame::bulk("f"), Frame::bulk("v")])
    );
}

/// Named users (the default user needs no password):
/// 1. A new client is `default` and may run commands at once.
/// 2. AUTH app app-pw (clear password) and AUTH hashed hashed-pw (password_sha256, given in
///    upper case) succeed; ACL WHOAMI and CLIENT INFO show the user.
/// 3. The digest itself is not a password; wrong passwords and unknown users get WRONGPASS,
///    and the client keeps the user it had.
#[test]
fn named_users_with_clear_and_hashed_passwords() {
    let redis = RedisServer::start();
    let config = format!(
        "[[auth.users]]\nname = \"app\"\npassword = \"app-pw\"\n\
         [[auth.users]]\nname = \"hashed\"\npassword_sha256 = \"{}\"\n",
        HASHED_PW_SHA256.to_ascii_uppercase()
    );
    let proxy = Proxy::builder().config(&config).nodes(&[&redis]).start();

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("default"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());

    assert_eq!(c.cmd(&["AUTH", "app", "app-pw"]), Frame::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("app"));
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));

    assert_eq!(c.cmd(&["AUTH", "hashed", "hashed-pw"]), Frame::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("hashed"));
    let info = c.cmd(&["CLIENT", "INFO"]).text();
    assert!(info.contains(" user=hashed "), "{info}");

    assert_eq!(c.cmd(&["AUTH", "hashed", HASHED_PW_SHA256]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "app", "wrong"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "ghost", "app-pw"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("hashed"));
    assert_eq!(c.cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// No password configured: AUTH <pw>, AUTH default <pw>, AUTH <unknown user> <pw> and
/// ACL WHOAMI answer exactly what a `redis-server` without password answers.
#[test]
fn auth_without_password_answers_like_redis() {
    let redis = RedisServer::start();
    let reference = RedisServer::start();
    let proxy = Proxy::start(&[&redis]);
    let mut c = proxy.client();
    let mut r = reference.client();
    for args in [
        &["AUTH", "whatever"][..],
        &["AUTH", "default", "whatever"],
        &["AUTH", "ghost", "whatever"],
        &["ACL", "WHOAMI"],
    ] {
        let expected = r.cmd(args);
        assert_eq!(c.cmd(args), expected, "{args:?}");
    }
    assert_eq!(c.cmd(&["AUTH", "whatever"]), err(NOT_CONFIGURED));
}

/// Passwords from the environment and from a file:
/// 1. The default password comes from `{ env = "..." }` (set only in the proxy's environment),
///    a named user's from `{ file = "..." }` whose content ends with a newline.
/// 2. Both authenticate; the file's trailing newline is not part of the password.
/// 3. Neither password appears in the proxy's log.
#[test]
fn passwords_from_env_and_file() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("app.pw");
    std::fs::write(&file, "file-pw-31ce\n").expect("write password file");
    let config = format!(
        "[auth]\npassword = {{ env = \"RFP_AUTH_TEST_PASSWORD\" }}\n\
         [[auth.users]]\nname = \"fileuser\"\npassword = {{ file = \"{}\" }}\n",
        file.display()
    );
    let proxy = start_with_auth(
        Proxy::builder()
            .config(&config)
            .env("RFP_AUTH_TEST_PASSWORD", "env-pw-94ab")
            .nodes(&[&redis]),
        &["env-pw-94ab"],
    );

    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd(&["AUTH", "RFP_AUTH_TEST_PASSWORD"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "env-pw-94ab"]), Frame::ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), Frame::bulk("default"));

    let mut f = proxy.client();
    assert_eq!(
        f.cmd(&["AUTH", "fileuser", "file-pw-31ce\n"]),
        err(WRONGPASS)
    );
    assert_eq!(f.cmd(&["AUTH", "fileuser", "file-pw-31ce"]), Frame::ok());
    assert_eq!(f.cmd(&["ACL", "WHOAMI"]), Frame::bulk("fileuser"));
    assert_eq!(f.cmd(&["SET", "k", "v"]), Frame::ok());

    let log = proxy.log();
    assert!(!log.contains("env-pw-94ab"), "log shows a password:\n{log}");
    assert!(
        !log.contains("file-pw-31ce"),
        "log shows a password:\n{log}"
    );
}

/// Limits before authentication (as Redis, compared with a `redis-server` with requirepass):
/// 1. A multibulk header of 11 arguments: `Protocol error: unauthenticated multibulk length`,
///    connection closed.
/// 2. A bulk header over 16384 bytes: `Protocol error: unauthenticated bulk length`, closed.
/// 3. At the limits (10 arguments, a 16384-byte bulk) the command is parsed and gets NOAUTH.
/// 4. After AUTH, 11 arguments and a 20 KB bulk are accepted, also when pipelined in the same
///    write as the AUTH; after a failed AUTH in the same write, the limit still applies.
#[test]
fn unauthenticated_clients_get_tight_frame_limits() {
    let redis = RedisServer::start();
    let reference = RedisServer::builder().password("s3cret").start();
    let proxy = start_with_auth(
        Proxy::builder()
            .config("[auth]\npassword = \"s3cret\"\n")
            .nodes(&[&redis]),
        &["s3cret"],
    );

    for (raw, text) in [
        (&b"*11\r\n"[..], "unauthenticated multibulk length"),
        (b"*2\r\n$16385\r\n", "unauthenticated bulk length"),
    ] {
        let mut expected = Client::connect(reference.addr());
        expected.send_raw(raw);
        assert_eq!(expected.read(), err(&format!("ERR Protocol error: {text}")));
        let mut c = proxy.client();
        c.send_raw(raw);
        assert_eq!(c.read(), err(&format!("ERR Protocol error: {text}")));
        assert!(c.closed(Duration::from_secs(5)), "not closed after {text}");
    }

    let items: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    let mut args = vec!["RPUSH", "list"];
    args.extend(items.iter().map(String::as_str));
    assert_eq!(args.len(), 10);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&args), err(NOAUTH));
    let big = "x".repeat(16384);
    assert_eq!(c.cmd(&["SET", "big", &big]), err(NOAUTH));
    assert_eq!(redis.cmd(&["EXISTS", "big"]), Frame::Int(0));

    assert_eq!(c.cmd(&["AUTH", "s3cret"]), Frame::ok());
    args.push("8");
    assert_eq!(c.cmd(&args), Frame::Int(9));

    // AUTH and a long command pipelined in one write: the command is read after AUTH ran.
    let mut p = proxy.client();
    let eleven = encode_strs(&args);
    let mut raw = encode(&[b"AUTH", b"s3cret"]);
    raw.extend(&eleven);
    p.send_raw(&raw);
    assert_eq!(p.read(), Frame::ok());
    assert_eq!(p.read(), Frame::Int(18));
    let mut q = proxy.client();
    let mut raw = encode(&[b"AUTH", b"wrong"]);
    raw.extend(&eleven);
    q.send_raw(&raw);
    assert_eq!(q.read(), err(WRONGPASS));
    assert_eq!(
        q.read(),
        err("ERR Protocol error: unauthenticated multibulk length")
    );
    assert!(q.closed(Duration::from_secs(5)), "not closed");
    let bigger = "y".repeat(20 * 1024);
    assert_eq!(c.cmd(&["SET", "big", &bigger]), Frame::ok());
    assert_eq!(c.cmd(&["GET", "big"]), Frame::bulk(&bigger));
}

const NOPERM_SET: &str = "NOPERM this user has no permissions to run the 'set' command";

/// Users' permissions:
/// 1. Users `reader` (read-only), `ops` (rules: +@read +@connection +@string -@dangerous
///    +client|list) and the default user (all).
/// 2. `reader`: GET and MGET work, SUBSCRIBE works; SET, DEL, EVAL, PUBLISH and FLUSHALL get
///    NOPERM naming the command; nothing it was refused reached Redis.
/// 3. `ops`: SET and GET work (@string), CLIENT LIST works, CLIENT KILL and KEYS (dangerous)
///    get NOPERM, LPUSH (@list) gets NOPERM.
/// 4. Inside MULTI a refused command answers NOPERM and EXEC aborts with EXECABORT; the
///    allowed command queued before it did not run.
/// 5. AUTH and HELLO work for a read-only user (switching to the default user restores SET).
#[test]
fn user_permissions_are_enforced_at_the_proxy() {
    let redis = RedisServer::start();
    let config = "[[auth.users]]\nname = \"reader\"\npassword = \"r-pw\"\ncommands = \"read-only\"\n\
                  [[auth.users]]\nname = \"ops\"\npassword = \"o-pw\"\n\
                  commands = [\"+@read\", \"+@connection\", \"+@string\", \"-@dangerous\", \"+client|list\"]\n";
    let proxy = Proxy::builder().config(config).nodes(&[&redis]).start();
    let mut direct = redis.client();
    assert_eq!(direct.cmd(&["SET", "k", "v"]), Frame::ok());

    let mut r = proxy.client();
    assert_eq!(r.cmd(&["AUTH", "reader", "r-pw"]), Frame::ok());
    assert_eq!(r.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(r.cmd(&["MGET", "k", "k"]).items().len(), 2);
    assert_eq!(r.cmd(&["SET", "k", "changed"]), err(NOPERM_SET));
    for (args, name) in [
        (&["DEL", "k"][..], "del"),
        (&["EVAL", "return redis.call('set','k','x')", "0"], "eval"),
        (&["PUBLISH", "c", "m"], "publish"),
        (&["FLUSHALL"], "flushall"),
    ] {
        assert_eq!(
            r.cmd(args),
            err(&format!(
                "NOPERM this user has no permissions to run the '{name}' command"
            ))
        );
    }
    assert_eq!(
        direct.cmd(&["GET", "k"]),
        Frame::bulk("v"),
        "nothing refused ran"
    );
    assert_eq!(
        r.cmd(&["SUBSCRIBE", "news"]).items()[0],
        Frame::bulk("subscribe")
    );

    let mut o = proxy.client();
    assert_eq!(o.cmd(&["AUTH", "ops", "o-pw"]), Frame::ok());
    assert_eq!(o.cmd(&["SET", "s", "1"]), Frame::ok());
    assert_eq!(o.cmd(&["GET", "s"]), Frame::bulk("1"));
    assert!(o.cmd(&["CLIENT", "LIST"]).text().contains("user=ops"));
    assert_eq!(
        o.cmd(&["CLIENT", "KILL", "ID", "999999"]),
        err("NOPERM this user has no permissions to run the 'client|kill' command")
    );
    assert_eq!(
        o.cmd(&["KEYS", "*"]),
        err("NOPERM this user has no permissions to run the 'keys' command")
    );
    assert_eq!(
        o.cmd(&["LPUSH", "l", "x"]),
        err("NOPERM this user has no permissions to run the 'lpush' command")
    );

    let mut t = proxy.client();
    assert_eq!(t.cmd(&["AUTH", "reader", "r-pw"]), Frame::ok());
    assert_eq!(t.cmd(&["MULTI"]), Frame::ok());
    assert_eq!(t.cmd(&["GET", "k"]), Frame::Simple("QUEUED".into()));
    assert_eq!(t.cmd(&["SET", "k", "tx"]), err(NOPERM_SET));
    assert!(t.cmd(&["EXEC"]).is_error("EXECABORT"));
    assert_eq!(direct.cmd(&["GET", "k"]), Frame::bulk("v"));

    assert!(!matches!(
        t.cmd(&["HELLO", "3", "AUTH", "reader", "r-pw"]),
        Frame::Error(_)
    ));
    assert_eq!(t.cmd(&["AUTH", "default", "any"]), Frame::ok());
    assert_eq!(t.cmd(&["SET", "k", "by-default"]), Frame::ok());
}

/// Failed authentications are limited per client address:
/// 1. A proxy with a password, `failure_burst = 3`, `failure_refill = "1s"`.
/// 2. Three wrong passwords get WRONGPASS; the fourth attempt, even with the right password,
///    gets the rate-limit error at once (the password is not checked), also on a new
///    connection from the same address.
/// 3. After the refill interval the right password works again; a success does not count.
#[test]
fn failed_authentications_are_rate_limited_per_address() {
    let redis = RedisServer::start();
    let proxy = start_with_auth(
        Proxy::builder()
            .config("[auth]\npassword = \"s3cret\"\nfailure_burst = 3\nfailure_refill = \"1s\"\n")
            .nodes(&[&redis]),
        &["s3cret"],
    );
    let mut c = proxy.client();
    for _ in 0..3 {
        assert_eq!(c.cmd(&["AUTH", "guess"]), err(WRONGPASS));
    }
    const LIMITED: &str = "ERR too many failed authentication attempts";
    let limited = c.cmd(&["AUTH", "s3cret"]);
    assert!(limited.is_error(LIMITED), "{limited:?}");
    let mut other = proxy.client();
    assert!(other
        .cmd(&["HELLO", "3", "AUTH", "default", "s3cret"])
        .is_error(LIMITED));
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));

    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if c.cmd(&["AUTH", "s3cret"]) == Frame::ok() {
            break;
        }
        assert!(Instant::now() < until, "never allowed to try again");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::ok());
}
