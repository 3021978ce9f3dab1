//! Unit tests of [`crate::outcome`].

use crate::outcome::*;

#[test]
fn replies() {
    assert_eq!(classify(b"+OK\r\n", true), Outcome::Ok);
    assert_eq!(classify(b"$-1\r\n", false), Outcome::Ok);
    assert_eq!(classify(b"$3\r\nabc\r\n", false), Outcome::Ok);
    assert_eq!(
        classify(b":1\r\n", true),
        Outcome::Failed {
            kind: UNEXPECTED.into(),
            fate: Fate::Unknown
        }
    );
    assert_eq!(
        classify(
            b"-READONLY You can't write against a read only replica.\r\n",
            true
        ),
        Outcome::Failed {
            kind: "READONLY".into(),
            fate: Fate::Refused
        }
    );
    assert_eq!(
        classify(b"!9\r\nERR oops!\r\n", false),
        Outcome::Failed {
            kind: "ERR".into(),
            fate: Fate::Refused
        }
    );
}

#[test]
fn the_proxys_own_errors() {
    let (kind, fate) = classify_error(
        "ERR the connection to the master was lost after the command was sent; it may have been applied (proxy)",
    );
    assert_eq!(kind, "ERR (proxy: may have been applied)");
    assert_eq!(fate, Fate::Unknown);
    let (kind, fate) =
        classify_error("MASTERDOWN no master is known; the command was not executed (proxy)");
    assert_eq!(kind, "MASTERDOWN (proxy: not executed)");
    assert_eq!(fate, Fate::Refused);
    assert_eq!(
        classify_error("ERR too many dedicated server connections in use; try again later (proxy)")
            .0,
        "ERR (proxy)"
    );
    assert_eq!(classify_error("LOADING Redis is loading").0, "LOADING");
    assert_eq!(
        proxy_failover_fate("MASTERDOWN the command was not executed (proxy)"),
        Some(Fate::Refused)
    );
    assert_eq!(
        proxy_failover_fate("ERR lost; it may have been applied (proxy)"),
        Some(Fate::Unknown)
    );
    assert_eq!(
        proxy_failover_fate("ERR too many connections (proxy)"),
        None
    );
    assert_eq!(proxy_failover_fate("ERR not executed"), None);
}
