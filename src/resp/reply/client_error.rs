//! Every error text a client can receive from the proxy, in one place: [`ClientError`]. Where
//! Redis has an error for the same situation, the text is Redis's; errors the proxy raises on
//! its own account end with `(proxy)`.

use bytes::{Bytes, BytesMut};

use super::Value;
use crate::resp::error::ProtocolError;

/// Errors the proxy answers with. The text of each is the one Redis uses for the same
/// situation where Redis has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// A frame the proxy cannot parse; the connection closes after it.
    Protocol(ProtocolError),
    /// A command before authentication.
    NoAuth,
    /// AUTH or HELLO AUTH with a wrong user or password.
    WrongPass,
    /// AUTH with a password while no password is configured.
    AuthNotConfigured,
    /// Passthrough mode: the master's own answer to the client's AUTH (`reply` is its error
    /// line, given unchanged).
    MasterAuth { reply: String },
    /// Passthrough mode: credentials that are not UTF-8 text.
    PassthroughNotText,
    /// Too many failed authentications from the client's address.
    AuthRateLimited { retry_after_secs: u64 },
    /// A command the user's permissions do not include.
    NoPerm { command: String },
    /// Wrong number of arguments.
    Arity { command: String },
    /// A command the master does not know.
    UnknownCommand { name: String, args: Vec<String> },
    /// Syntax error in a command the proxy answers.
    Syntax,
    /// CLIENT KILL addr:port naming no client.
    NoSuchClient,
    /// CLIENT KILL ID with an id that cannot be one.
    BadClientId,
    /// CLIENT UNBLOCK with a reason other than TIMEOUT or ERROR.
    UnblockReason,
    /// CLIENT KILL TYPE with an unknown type.
    UnknownClientType { kind: String },
    /// A subcommand the proxy does not know.
    UnknownSubcommand { command: String, sub: String },
    /// Integer argument expected.
    NotInteger,
    /// SELECT beyond the configured databases.
    DbIndexOutOfRange,
    /// HELLO with a protocol other than 2 or 3.
    NoProto,
    /// HELLO with an option the proxy does not know.
    HelloSyntax { option: String },
    /// CLIENT SETNAME with forbidden characters.
    BadClientName,
    /// CLIENT SETINFO with an unknown attribute.
    BadClientInfo { attr: String },
    /// CLIENT SETINFO value with forbidden characters.
    BadLibInfo { attr: String },
    /// HELLO with a protocol version that is not a number.
    HelloProtoNotInteger,
    /// HELLO without AUTH before authenticating.
    HelloNoAuth,
    /// A command refused on the data port.
    Refused { command: String },
    /// A command that cannot run through a proxy.
    Unsupported { command: String },
    /// A command that may not appear inside MULTI through the proxy.
    NotInMulti { command: String },
    /// MULTI inside MULTI.
    NestedMulti,
    /// EXEC without MULTI.
    ExecWithoutMulti,
    /// DISCARD without MULTI.
    DiscardWithoutMulti,
    /// WATCH inside MULTI.
    WatchInMulti,
    /// EXEC of a transaction that had a queue-time error.
    ExecAbort,
    /// A command Redis forbids in RESP2 subscribed mode.
    SubscribedContext { command: String },
    /// A protocol change while the client holds server-side state.
    ProtoChangePinned,
    /// No dedicated backend connection may be opened right now.
    TooManyPinned,
    /// The client limit was reached.
    MaxClients,
    /// No master can take the command; it was not executed.
    NoMaster { why: String },
    /// The connection to the master failed before the command was sent.
    NotSent,
    /// No connection to the master could carry the command: it is busy running a script, and
    /// refuses new connections' handshakes as it refuses everything.
    Busy,
    /// The master refused the command before running it, every time it was sent (`reply` is
    /// its last refusal).
    RefusedAgain { reply: String, times: u8 },
    /// The master refused the proxy's connection handshake for this client's backend user
    /// (`reply` is its error line: a wrong password, missing ACL rights).
    BackendRefused { reply: String },
    /// The master refused the proxy's own credentials, under which it checks the node of a
    /// connection for the client's user (`reply` is its error line).
    ProxyCredentialsRefused { reply: String },
    /// The connection to the master failed after the command was sent.
    OutcomeUnknown,
    /// A durable write ran on the master, but fewer replicas than required acknowledged it
    /// in time (`acked`: how many did, when known).
    Unconfirmed {
        replicas: u32,
        acked: Option<u32>,
        timeout_ms: u64,
    },
    /// The master changed between this client's writes and its WAIT.
    WaitMasterChanged,
    /// The client is in MONITOR mode.
    MonitorMode,
    /// Redirect target for tracking is not a client of this proxy pinned to the same server.
    NoSuchRedirect,
}

impl ClientError {
    /// The error text without the leading `-`.
    pub fn text(&self) -> String {
        let text = self.text_as_formatted();
        // An error reply is one line, whatever client bytes it quotes (a command name, an
        // option, the byte where `$` was expected): like Redis's `addReplyErrorFormat`, line
        // breaks become spaces. Left in, they would end the line early and desynchronise the
        // client's parser (found by the `session` fuzz target).
        if text.contains(['\r', '\n']) {
            return text.replace(['\r', '\n'], " ");
        }
        text
    }

    fn text_as_formatted(&self) -> String {
        use ClientError::*;
        match self {
            Protocol(e) => format!("ERR Protocol error: {e}"),
            NoAuth => "NOAUTH Authentication required.".into(),
            WrongPass => "WRONGPASS invalid username-password pair or user is disabled.".into(),
            MasterAuth { reply } => reply.trim_start_matches('-').to_string(),
            PassthroughNotText => "ERR the proxy passes only UTF-8 user names and passwords to the master (proxy)".into(),
            AuthRateLimited { retry_after_secs } => format!("ERR too many failed authentication attempts from this address; retry in {retry_after_secs}s (proxy)"),
            AuthNotConfigured => "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
            NoPerm { command } => format!("NOPERM this user has no permissions to run the '{command}' command"),
            Arity { command } => format!("ERR wrong number of arguments for '{command}' command"),
            UnknownCommand { name, args } => format!("ERR unknown command '{}', with args beginning with: {}", clip(name, 128), quoted_args(args)),
            Syntax => "ERR syntax error".into(),
            NoSuchClient => "ERR No such client".into(),
            UnblockReason => "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR".into(),
            BadClientId => "ERR client-id should be greater than 0".into(),
            UnknownClientType { kind } => format!("ERR Unknown client type '{kind}'"),
            UnknownSubcommand { command, sub } => format!("ERR unknown subcommand '{sub}'. Try {command} HELP."),
            NotInteger => "ERR value is not an integer or out of range".into(),
            DbIndexOutOfRange => "ERR DB index is out of range".into(),
            NoProto => "NOPROTO unsupported protocol version".into(),
            HelloSyntax { option } => format!("ERR Syntax error in HELLO option '{option}'"),
            BadClientName => "ERR Client names cannot contain spaces, newlines or special characters.".into(),
            BadClientInfo { attr } => format!("ERR Unrecognized option '{attr}'"),
            BadLibInfo { attr } => format!("ERR {attr} cannot contain spaces, newlines or special characters."),
            HelloProtoNotInteger => "ERR Protocol version is not an integer or out of range".into(),
            HelloNoAuth => "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            Refused { command } => format!("ERR command '{command}' is disabled on the proxy's data port; an operator can allow it with allow_commands (proxy)"),
            Unsupported { command } => format!("ERR command '{command}' cannot run through the proxy (proxy)"),
            NotInMulti { command } => format!("ERR '{command}' inside MULTI is not supported through the proxy (proxy)"),
            NestedMulti => "ERR MULTI calls can not be nested".into(),
            ExecWithoutMulti => "ERR EXEC without MULTI".into(),
            DiscardWithoutMulti => "ERR DISCARD without MULTI".into(),
            WatchInMulti => "ERR WATCH inside MULTI is not allowed".into(),
            ExecAbort => "EXECABORT Transaction discarded because of previous errors.".into(),
            SubscribedContext { command } => format!("ERR Can't execute '{command}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
            ProtoChangePinned => "ERR HELLO cannot change the protocol while the connection holds server-side state (subscriptions, WATCH, tracking) (proxy)".into(),
            TooManyPinned => "ERR too many dedicated server connections in use; try again later (proxy)".into(),
            MaxClients => "ERR max number of clients reached".into(),
            NoMaster { why } => format!("MASTERDOWN {why}; the command was not executed (proxy)"),
            NotSent => "MASTERDOWN the connection to the master failed; the command was not executed (proxy)".into(),
            ProxyCredentialsRefused { reply } => format!("ERR the master refused the proxy's own credentials ([backend] user and password), with which it checks every connection's node: {}; the command was not executed (proxy)", reply.trim_start_matches('-')),
            BackendRefused { reply } => format!("{} (proxy: the master refused the connection)", reply.trim_start_matches('-')),
            RefusedAgain { reply, times } => format!("{} (proxy: refused {times} times by the master, which stays in place; the command was not executed)", reply.trim_start_matches('-')),
            Busy => "BUSY the master is busy running a script or function; SCRIPT KILL or FUNCTION KILL stops it; the command was not executed (proxy)".into(),
            OutcomeUnknown => "ERR the connection to the master was lost after the command was sent; it may have been applied (proxy)".into(),
            Unconfirmed { replicas, acked, timeout_ms } => format!(
                "UNCONFIRMED the write was applied on the master but not confirmed by {replicas} replica(s) within {timeout_ms} ms ({}); it may be lost if the master fails (proxy)",
                match acked {
                    Some(n) => format!("{n} acknowledged"),
                    None => "the connection to the master was lost before they answered".into(),
                }
            ),
            WaitMasterChanged => "ERR the master changed since this connection's last write; WAIT cannot count its replicas (proxy)".into(),
            MonitorMode => "ERR only QUIT and RESET are accepted in MONITOR mode through the proxy (proxy)".into(),
            NoSuchRedirect => "ERR The client ID you want redirect to does not exist".into(),
        }
    }

    /// Short, fixed label of the error's kind, for metrics.
    pub fn kind(&self) -> &'static str {
        use ClientError::*;
        match self {
            Protocol(_) => "protocol",
            NoAuth | HelloNoAuth => "noauth",
            WrongPass | AuthNotConfigured | MasterAuth { .. } | PassthroughNotText => "wrongpass",
            AuthRateLimited { .. } => "auth_limited",
            NoPerm { .. } => "noperm",
            Refused { .. } | Unsupported { .. } => "refused",
            NoMaster { .. } => "no_master",
            NotSent
            | Busy
            | BackendRefused { .. }
            | ProxyCredentialsRefused { .. }
            | RefusedAgain { .. } => "not_sent",
            OutcomeUnknown => "outcome_unknown",
            Unconfirmed { .. } => "unconfirmed",
            TooManyPinned | MaxClients => "limit",
            Arity { .. }
            | Syntax
            | NoSuchClient
            | UnblockReason
            | BadClientId
            | UnknownClientType { .. }
            | UnknownSubcommand { .. }
            | NotInteger
            | DbIndexOutOfRange
            | NoProto
            | HelloSyntax { .. }
            | BadClientName
            | BadClientInfo { .. }
            | BadLibInfo { .. }
            | HelloProtoNotInteger
            | UnknownCommand { .. } => "syntax",
            NotInMulti { .. }
            | NestedMulti
            | ExecWithoutMulti
            | DiscardWithoutMulti
            | WatchInMulti
            | ExecAbort
            | SubscribedContext { .. }
            | ProtoChangePinned
            | WaitMasterChanged
            | MonitorMode
            | NoSuchRedirect => "state",
        }
    }

    /// The error as a reply value.
    pub fn value(&self) -> Value {
        Value::Error(self.text())
    }

    /// Appends the error frame (identical in RESP2 and RESP3) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(b"-");
        buf.extend_from_slice(self.text().as_bytes());
        buf.extend_from_slice(b"\r\n");
    }

    /// The error frame as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// At most `n` bytes of `s` (on a character boundary), as Redis's `%.128s`.
fn clip(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Redis's argument list for "unknown command" errors: `'a' 'b' `, about 128 bytes at most.
fn quoted_args(args: &[String]) -> String {
    let mut out = String::new();
    for a in args {
        if out.len() >= 128 {
            break;
        }
        let room = 128 - out.len();
        out.push('\'');
        out.push_str(clip(a, room));
        out.push_str("' ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Proto;
    use super::*;

    #[test]
    fn unknown_command_text_matches_redis() {
        let e = ClientError::UnknownCommand {
            name: "NOSUCHCOMMAND".into(),
            args: vec!["x".into()],
        };
        assert_eq!(
            e.text(),
            "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' "
        );
    }

    #[test]
    fn errors_are_single_lines() {
        let e = ClientError::Protocol(ProtocolError::InvalidBulkLength);
        assert_eq!(
            &e.to_bytes()[..],
            b"-ERR Protocol error: invalid bulk length\r\n"
        );
        assert_eq!(
            ClientError::Syntax.value().to_bytes(Proto::Resp3),
            e_bytes("ERR syntax error")
        );
    }

    /// Found by the `session` fuzz target: a `\r` where `$` was expected went into the error
    /// line as is, and the client saw a broken reply.
    #[test]
    fn quoted_line_breaks_become_spaces() {
        let e = ClientError::Protocol(ProtocolError::ExpectedDollar(b'\r'));
        assert_eq!(
            &e.to_bytes()[..],
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        let e = ClientError::UnknownCommand {
            name: "a\r\nb".into(),
            args: vec!["\n".into()],
        };
        assert_eq!(
            e.value().to_bytes(Proto::Resp3),
            e_bytes("ERR unknown command 'a  b', with args beginning with: ' ' ")
        );
    }

    fn e_bytes(t: &str) -> Bytes {
        Bytes::from(format!("-{t}\r\n"))
    }
}
