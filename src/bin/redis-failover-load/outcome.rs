//! What a reply (or its absence) means: the label an error is counted under, and, for a
//! write, its [`Fate`] as far as the ledger can know it. Redis refuses a command before running
//! it whenever it answers with an error, so a Redis error means "not applied". The proxy says
//! which of its own errors left the command unexecuted ("... not executed (proxy)") and which
//! may have been applied ("... may have been applied (proxy)"); a lost connection or a missing
//! reply leaves the outcome unknown.
//!
//! The tests include this file (through `tests/support/harness.rs`) and judge their own
//! writers' replies with it, so "which proxy error left a write unexecuted" has one answer;
//! nothing here may depend on the rest of the harness.

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Acknowledged (`+OK`).
    Acked,
    /// Refused: certainly not applied.
    Refused,
    /// Perhaps applied, and if so before the harness learned it was lost (an error saying
    /// it may have been applied, or the connection closing under it).
    Unknown,
    /// No reply within the deadline: perhaps applied, at any time after it was sent.
    TimedOut,
}

/// Label of a missing reply.
pub(crate) const TIMEOUT: &str = "timeout";
/// Label of a connection that failed with commands in flight.
pub(crate) const CONNECTION_LOST: &str = "connection lost";
/// Label of a reply that is not what the command returns.
pub(crate) const UNEXPECTED: &str = "unexpected reply";

/// The classification of one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A normal reply.
    Ok,
    /// An error (or a reply the harness did not expect), counted under `kind`.
    Failed { kind: String, fate: Fate },
}

/// Classifies the reply `frame` (one whole RESP frame) to a GET (`write` false) or a SET.
pub(crate) fn classify(frame: &[u8], write: bool) -> Outcome {
    match frame.first() {
        Some(b'-') | Some(b'!') => {
            let text = error_text(frame);
            let (kind, fate) = classify_error(&text);
            Outcome::Failed { kind, fate }
        }
        _ if !write => Outcome::Ok,
        _ if frame == b"+OK\r\n" => Outcome::Ok,
        _ => Outcome::Failed {
            kind: UNEXPECTED.into(),
            fate: Fate::Unknown,
        },
    }
}

/// The text of an error frame (`-TEXT\r\n`, or a RESP3 blob error), lossy.
fn error_text(frame: &[u8]) -> String {
    let body = frame.strip_suffix(b"\r\n").unwrap_or(frame);
    let body = match body.first() {
        // `!<len>\r\n<text>`
        Some(b'!') => body
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&body[1..], |i| &body[i + 1..]),
        _ => &body[1..],
    };
    String::from_utf8_lossy(body).into_owned()
}

/// The label and write fate of an error text.
pub(crate) fn classify_error(text: &str) -> (String, Fate) {
    let code = text.split_whitespace().next().unwrap_or("ERR");
    match proxy_failover_fate(text) {
        Some(Fate::Refused) => (format!("{code} (proxy: not executed)"), Fate::Refused),
        Some(fate) => (format!("{code} (proxy: may have been applied)"), fate),
        // Any other error of the proxy's (a limit, a refused command) is given before the
        // command is sent, like Redis's own.
        None if is_proxy_error(text) => (format!("{code} (proxy)"), Fate::Refused),
        None => (code.to_string(), Fate::Refused),
    }
}

/// The fate the proxy gives a write in one of its failover errors: [`Fate::Refused`] for
/// "... not executed (proxy)", [`Fate::Unknown`] for "... may have been applied (proxy)";
/// `None` for any other text.
pub(crate) fn proxy_failover_fate(text: &str) -> Option<Fate> {
    if !is_proxy_error(text) {
        return None;
    }
    // "may have been applied" first: it is the weaker claim, and a text saying both must not
    // pass for certainly unexecuted.
    if text.contains("may have been applied") {
        Some(Fate::Unknown)
    } else if text.contains("not executed") {
        Some(Fate::Refused)
    } else {
        None
    }
}

/// Whether the proxy, not Redis, wrote the error: its own errors end in "(proxy)".
fn is_proxy_error(text: &str) -> bool {
    text.trim_end().ends_with("(proxy)")
}
