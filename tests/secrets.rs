//! Secrets stay inside the proxy: passwords (the proxy's own on Redis, clients', users'), the
//! admin token and guesses at them never appear in its log (even at debug level), in the
//! admin endpoint's answers, or in replies to clients; configuration errors name the key,
//! not the value.

mod support;

use std::time::{Duration, Instant};

use support::http;
use support::{free_port, Frame, Proxy, RedisServer};

const BACKEND_PW: &str = "backend-Secret-7d1f";
const CLIENT_PW: &str = "client-Secret-93aa";
const USER_PW: &str = "user-Secret-c4e2";
const ADMIN_TOKEN: &str = "admin-Secret-5b08";
const GUESS: &str = "guess-Secret-1e6d";
const NEW_BACKEND_PW: &str = "rotated-Secret-0f3c";

fn assert_clean(what: &str, text: &str) {
    for secret in [
        BACKEND_PW,
        CLIENT_PW,
        USER_PW,
        ADMIN_TOKEN,
        GUESS,
        NEW_BACKEND_PW,
    ] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

/// 1. Redis requires a password; the proxy has it as its backend password, a client password,
///    a user with its own password, an admin token, and logs at debug level.
/// 2. Clients authenticate wrongly (AUTH, AUTH user, HELLO AUTH) and rightly; every reply is
///    collected.
/// 3. Redis's password is changed and its clients killed, so the proxy's handshakes are
///    refused (the node turns unhealthy and commands fail with the proxy's error).
/// 4. `/topology` without the token is refused; with it, it shows the node's error; `/metrics`
///    is read.
/// 5. Neither the log, nor the admin answers, nor any reply contains a secret.
#[test]
fn secrets_never_leave_the_proxy() {
    let redis = RedisServer::builder().password(BACKEND_PW).start();
    let admin = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[backend]\npassword = \"{BACKEND_PW}\"\n\
         [auth]\npassword = \"{CLIENT_PW}\"\n\
         [[auth.users]]\nname = \"app\"\npassword = \"{USER_PW}\"\n\
         [admin_auth]\ntoken = \"{ADMIN_TOKEN}\"\n\
         [health]\ninterval = \"100ms\"\n"
    );
    let proxy = Proxy::builder()
        .config(&config)
        .nodes(&[&redis])
        .args(&["--admin", &admin])
        .env("RUST_LOG", "debug")
        .spawn();
    let admin = admin.parse().unwrap();
    let mut replies = Vec::new();
    let mut c = proxy.client();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(c.cmd(&["AUTH", CLIENT_PW]), Frame::ok());
        if c.cmd(&["SET", "k", "v"]) == Frame::ok() {
            break;
        }
        assert!(Instant::now() < until, "never ready: {}", proxy.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for args in [
        &["AUTH", GUESS][..],
        &["AUTH", "app", GUESS],
        &["AUTH", "nobody", USER_PW],
        &["HELLO", "3", "AUTH", "app", GUESS],
        &["AUTH", "app", USER_PW],
        &["CLIENT", "LIST"],
        &["CLIENT", "INFO"],
        &["HELLO"],
    ] {
        replies.push(format!("{:?}", c.cmd(args)));
    }

    let mut direct = redis.client();
    assert_eq!(direct.cmd(&["AUTH", BACKEND_PW]), Frame::ok());
    assert_eq!(
        direct.cmd(&["CONFIG", "SET", "requirepass", NEW_BACKEND_PW]),
        Frame::ok()
    );
    direct.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.cmd(&["GET", "k"]);
        replies.push(format!("{r:?}"));
        if matches!(r, Frame::Error(_)) && proxy.log().contains("WRONGPASS") {
            break;
        }
        assert!(
            Instant::now() < until,
            "handshakes never refused: {}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let refused = http::get(admin, "/topology", None);
    assert_eq!(refused.status, 401, "{refused:?}");
    let wrong = http::get(admin, "/topology", Some(GUESS));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let until = Instant::now() + Duration::from_secs(15);
    let topology = loop {
        let t = http::get(admin, "/topology", Some(ADMIN_TOKEN));
        assert_eq!(t.status, 200);
        if t.body.contains("WRONGPASS") {
            break t;
        }
        assert!(Instant::now() < until, "node error never shown: {}", t.body);
        std::thread::sleep(Duration::from_millis(100));
    };
    let metrics = http::get(admin, "/metrics", None);
    assert_eq!(metrics.status, 200);

    let log = proxy.log();
    assert!(log.contains("DEBUG"), "debug logging was not on:\n{log}");
    assert_clean("the log", &log);
    assert_clean("/topology", &topology.body);
    assert_clean("/topology refusals", &(refused.body + &wrong.body));
    assert_clean("/metrics", &metrics.body);
    assert_clean("the replies", &replies.join("\n"));
}

/// A configuration with secrets in the wrong shape is refused by `--check` with the key's
/// path, never the value.
#[test]
fn configuration_errors_do_not_echo_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[backend]\npassword = [\"{BACKEND_PW}\"]\n\
             [auth]\npassword = {{ value = \"{CLIENT_PW}\" }}\n\
             [[auth.users]]\nname = \"app\"\npassword_sha256 = \"{USER_PW}\"\n\
             [[sites]]\nnodes = [\"127.0.0.1:1\"]\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redis-failover-proxy"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .expect("run --check");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for key in [
        "backend.password",
        "auth.password",
        "auth.users[0].password_sha256",
    ] {
        assert!(text.contains(key), "{key} not named:\n{text}");
    }
    assert_clean("--check", &text);
}
