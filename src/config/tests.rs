//! Reading and checking whole configuration files.

use super::*;

#[test]
fn reports_all_problems_at_once() {
    let err = Config::from_toml(
        r#"
listen = "not an address"
colour = "blue"
[backend]
reply_timeout = "soon"
pool_sise = 3
[[sites]]
nodes = ["a:1"]
wat = 1
"#,
    )
    .unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "listen",
            "backend.reply_timeout",
            "backend.pool_sise",
            "sites[0].wat",
            "colour"
        ]
    );
    assert!(err.to_string().contains("5 problem(s)"));
}

#[test]
fn secrets_and_defaults() {
    let cfg = Config::from_toml(
        r#"
[backend]
password = "backend-pw"
[auth]
password_sha256 = "AA00000000000000000000000000000000000000000000000000000000000000"
[[auth.users]]
name = "app"
password = "app-pw"
[[sites]]
name = "a"
nodes = ["127.0.0.1:7001", "[::1]:7002"]
"#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(
        cfg.backend.password.as_ref().unwrap().expose(),
        "backend-pw"
    );
    assert!(!format!("{cfg:?}").contains("backend-pw"));
    assert!(!format!("{cfg:?}").contains("app-pw"));
    assert_eq!(cfg.limits.max_bulk_len, 512 * 1024 * 1024);
    assert_eq!(split_host_port("[::1]:7002"), Some(("::1", 7002)));
}

#[test]
fn validation_needs_nodes() {
    let err = Config::default().validate().unwrap_err();
    assert_eq!(err.0[0].path, "sites");
}

#[test]
fn passthrough_has_no_users_of_its_own() {
    let sites = "[[sites]]\nname = \"a\"\nnodes = [\"127.0.0.1:7001\"]\n";
    let ok = Config::from_toml(&format!("[auth]\nmode = \"passthrough\"\n{sites}")).unwrap();
    ok.validate().unwrap();
    assert_eq!(ok.auth.mode, AuthMode::Passthrough);
    let both = format!(
        "[auth]\nmode = \"passthrough\"\npassword = \"x\"\n[[auth.users]]\nname = \"u\"\n{sites}"
    );
    let err = Config::from_toml(&both).unwrap().validate().unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["auth.password", "auth.users"]);
    let err = Config::from_toml(&format!("[auth]\nmode = \"ldap\"\n{sites}")).unwrap_err();
    assert_eq!(err.0[0].path, "auth.mode");
}
