//! Unit tests of [`crate::handshake`].

use crate::handshake::*;

#[test]
fn auth_command_and_debug() {
    let bare = Credentials {
        user: None,
        password: "s3cret".into(),
    };
    assert_eq!(bare.command(), ["AUTH", "s3cret"]);
    let user = Credentials {
        user: Some("app".into()),
        password: "pw".into(),
    };
    assert_eq!(user.command(), ["AUTH", "app", "pw"]);
    assert!(!format!("{bare:?}").contains("s3cret"));
}
