//! What a command is, for the proxy: which connection it may run on, whether the proxy answers it
//! itself, whether it may be re-sent after a failure, and whether it is refused on the data port.
//!
//! The facts come from the generated [`table`] (what Redis reports in `COMMAND`); this module
//! only maps them to the proxy's handling [`Kind`]. Commands missing from the table (module
//! commands, commands newer than the table) are forwarded as writes: they reach Redis, which
//! answers them, and they are never re-sent, because nothing is known about their effects.

mod index;
pub mod learned;
mod spec;
mod table;

pub use spec::{CommandSpec, CATEGORY_NAMES};
pub use spec::{
    C_ADMIN, C_BITMAP, C_BLOCKING, C_CONNECTION, C_DANGEROUS, C_FAST, C_GEO, C_HASH, C_HYPERLOGLOG,
    C_KEYSPACE, C_LIST, C_PUBSUB, C_READ, C_SCRIPTING, C_SET, C_SLOW, C_SORTEDSET, C_STREAM,
    C_STRING, C_TRANSACTION, C_WRITE,
};

pub use index::{containers, in_table, is_container, lookup, row_of, spec_at};
use index::{find, kind_of, upper};
use spec::F_BLOCKING;
pub(crate) use spec::{F_READONLY, F_WRITE};
use table::COMMANDS;

use super::scan::Request;

/// Longest command or subcommand name looked up; longer names are unknown commands.
const MAX_NAME: usize = 32;

/// How the proxy handles a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Does not modify data: may share a pipelined connection and may be re-sent when its
    /// outcome is unknown.
    Read,
    /// Anything else that may share a pipelined connection; never re-sent unless Redis
    /// refused it before executing it.
    Write,
    /// Blocks on the server (BLPOP, XREAD BLOCK, ...): runs alone on a dedicated connection.
    Blocking,
    /// WAIT and WAITAOF: count acknowledgements of this client's own writes.
    Wait,
    /// SCRIPT KILL and FUNCTION KILL: stop a script that keeps the node busy. Every shared
    /// connection may be waiting behind that script's reply, so they go on a connection of
    /// their own, at once.
    Kill,
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE.
    Subscribe(Channels),
    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE.
    Unsubscribe(Channels),
    /// MULTI.
    Multi,
    /// EXEC.
    Exec,
    /// DISCARD.
    Discard,
    /// WATCH.
    Watch,
    /// UNWATCH.
    Unwatch,
    /// MONITOR.
    Monitor,
    /// CLIENT TRACKING, CLIENT CACHING, CLIENT GETREDIR, CLIENT TRACKINGINFO: state on the
    /// server connection.
    Tracking,
    /// Answered by the proxy from the client's own state.
    Local(Local),
    /// Refused on the data port unless the operator allowed it.
    Guarded,
    /// Cannot work through a proxy at all (replication handshakes).
    Unsupported,
}

impl Kind {
    /// Index of the command's class in the metrics' class list
    /// (`read, write, blocking, wait, pubsub, transaction, local, admin, monitor, tracking`).
    pub fn class_index(self) -> usize {
        match self {
            Kind::Read => 0,
            Kind::Write | Kind::Kill => 1,
            Kind::Blocking => 2,
            Kind::Wait => 3,
            Kind::Subscribe(_) | Kind::Unsubscribe(_) => 4,
            Kind::Multi | Kind::Exec | Kind::Discard | Kind::Watch | Kind::Unwatch => 5,
            Kind::Local(_) => 6,
            Kind::Guarded | Kind::Unsupported => 7,
            Kind::Monitor => 8,
            Kind::Tracking => 9,
        }
    }
}

/// The three pub/sub namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    /// Plain channels (SUBSCRIBE).
    Plain,
    /// Patterns (PSUBSCRIBE).
    Pattern,
    /// Shard channels (SSUBSCRIBE).
    Shard,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Reset,
    Select,
    Hello,
    Auth,
    ClientId,
    ClientInfo,
    ClientList,
    ClientSetName,
    ClientGetName,
    ClientSetInfo,
    ClientReply,
    /// CLIENT CAPA: accepted and without effect (the proxy never sends a client elsewhere).
    ClientCapa,
    AclWhoami,
}

/// A classified command.
#[derive(Debug, Clone, Copy)]
pub struct Classified {
    /// How to handle it.
    pub kind: Kind,
    /// The table row, when the command is known.
    pub spec: Option<&'static CommandSpec>,
}

impl Classified {
    /// Whether the argument count is acceptable (unknown commands always are: Redis decides).
    pub fn arity_ok(&self, argc: usize) -> bool {
        self.spec.is_none_or(|s| s.arity_ok(argc))
    }

    /// ACL categories of the command (0 for unknown commands).
    pub fn categories(&self) -> u32 {
        self.spec.map_or(0, |s| s.categories)
    }

    /// The name Redis uses in ACL rules and errors (`get`, `client|kill`).
    pub fn acl_name(&self, req: &Request) -> String {
        let mut name = String::from_utf8_lossy(req.name()).to_ascii_lowercase();
        if let Some(spec) = self.spec.filter(|s| !s.sub.is_empty()) {
            name.push('|');
            name.push_str(&String::from_utf8_lossy(spec.sub).to_ascii_lowercase());
        }
        name
    }
}

/// Whether a forwarded command (of kind [`Kind::Write`]) changes data, so that a durable
/// write waits for the replicas: the table's `write` flag, scripts and functions that are not
/// `_RO` (they may write), the master's own flags for commands the table lacks, and, knowing
/// nothing, yes.
pub fn writes_data(req: &Request) -> bool {
    match lookup(req.name(), req.arg1()) {
        Some(spec) => {
            spec.flags & F_WRITE != 0 || matches!(spec.name, b"EVAL" | b"EVALSHA" | b"FCALL")
        }
        None => learned::lookup(req.name(), req.arg1()).is_none_or(|f| f.write),
    }
}

/// Classifies a request.
pub fn classify(req: &Request) -> Classified {
    let Some((row, exact)) = find(req.name(), req.arg1()) else {
        // Not in the table: a command newer than the table, or a module's. The master's own
        // flags decide; before any master told them, it is forwarded as a write.
        let mut nb = [0u8; MAX_NAME];
        let kind = upper(req.name(), &mut nb)
            .and_then(|n| special_kind(n, req.arg1()))
            .or_else(|| learned::lookup(req.name(), None).map(learned::Flags::kind))
            .unwrap_or(Kind::Write);
        return Classified { kind, spec: None };
    };
    let spec = Some(&COMMANDS[row]);
    let mut kind = kind_of(row);
    if !exact {
        // A container with a subcommand the table lacks (CLIENT SETINFO on an older table).
        kind = special_kind(COMMANDS[row].name, req.arg1())
            .or_else(|| unknown_sub_kind(COMMANDS[row].name, req.arg1()))
            .unwrap_or(kind);
    }
    // XREAD and XREADGROUP block or not depending on their arguments.
    if kind == Kind::Blocking && matches!(COMMANDS[row].name, b"XREAD" | b"XREADGROUP") {
        kind = stream_read_kind(req, spec);
    }
    Classified { kind, spec }
}

/// The kind of commands the proxy treats specially, by upper-case name (and subcommand).
fn special_kind(name: &[u8], sub: Option<&[u8]>) -> Option<Kind> {
    Some(match name {
        b"PING" => Kind::Local(Local::Ping),
        b"ECHO" => Kind::Local(Local::Echo),
        b"QUIT" => Kind::Local(Local::Quit),
        b"RESET" => Kind::Local(Local::Reset),
        b"SELECT" => Kind::Local(Local::Select),
        b"HELLO" => Kind::Local(Local::Hello),
        b"AUTH" => Kind::Local(Local::Auth),
        b"MULTI" => Kind::Multi,
        b"EXEC" => Kind::Exec,
        b"DISCARD" => Kind::Discard,
        b"WATCH" => Kind::Watch,
        b"UNWATCH" => Kind::Unwatch,
        b"MONITOR" => Kind::Monitor,
        b"SUBSCRIBE" => Kind::Subscribe(Channels::Plain),
        b"PSUBSCRIBE" => Kind::Subscribe(Channels::Pattern),
        b"SSUBSCRIBE" => Kind::Subscribe(Channels::Shard),
        b"UNSUBSCRIBE" => Kind::Unsubscribe(Channels::Plain),
        b"PUNSUBSCRIBE" => Kind::Unsubscribe(Channels::Pattern),
        b"SUNSUBSCRIBE" => Kind::Unsubscribe(Channels::Shard),
        b"WAIT" | b"WAITAOF" => Kind::Wait,
        b"SCRIPT" | b"FUNCTION" if sub_is(sub, &["KILL"]) => Kind::Kill,
        b"CLIENT" => client_kind(sub),
        b"ACL" => acl_kind(sub),
        b"CONFIG" => config_kind(sub),
        b"SYNC" | b"PSYNC" | b"REPLCONF" => Kind::Unsupported,
        b"REPLICAOF" | b"SLAVEOF" | b"FAILOVER" | b"SHUTDOWN" | b"DEBUG" | b"MODULE"
        | b"SENTINEL" => Kind::Guarded,
        _ => return None,
    })
}

/// A subcommand the table lacks, of a container it knows: by the master's flags for it. The
/// server's own error answers one the master does not know either (nothing runs); while no
/// master has told its subcommands, it is refused rather than guessed. Unknown `CLIENT`
/// subcommands change the state of the connection they run on, which other clients share:
/// never forwarded.
fn unknown_sub_kind(container: &[u8], sub: Option<&[u8]>) -> Option<Kind> {
    let sub = sub?;
    if container == b"CLIENT" {
        return Some(Kind::Unsupported);
    }
    match learned::lookup(container, Some(sub)) {
        Some(flags) => Some(flags.kind()),
        None if learned::lookup(container, None).is_some() => Some(Kind::Read),
        None => Some(Kind::Unsupported),
    }
}

fn data_kind(spec: Option<&CommandSpec>) -> Kind {
    match spec {
        Some(s) if s.has(F_BLOCKING) => Kind::Blocking,
        Some(s) if s.has(F_READONLY) && !s.has(F_WRITE) => Kind::Read,
        _ => Kind::Write,
    }
}

fn sub_is(sub: Option<&[u8]>, names: &[&str]) -> bool {
    sub.is_some_and(|s| names.iter().any(|n| s.eq_ignore_ascii_case(n.as_bytes())))
}

fn client_kind(sub: Option<&[u8]>) -> Kind {
    let local = |l| Kind::Local(l);
    match sub {
        s if sub_is(s, &["ID"]) => local(Local::ClientId),
        s if sub_is(s, &["INFO"]) => local(Local::ClientInfo),
        s if sub_is(s, &["LIST"]) => local(Local::ClientList),
        s if sub_is(s, &["SETNAME"]) => local(Local::ClientSetName),
        s if sub_is(s, &["GETNAME"]) => local(Local::ClientGetName),
        s if sub_is(s, &["SETINFO"]) => local(Local::ClientSetInfo),
        s if sub_is(s, &["REPLY"]) => local(Local::ClientReply),
        s if sub_is(s, &["TRACKING", "CACHING", "GETREDIR", "TRACKINGINFO"]) => Kind::Tracking,
        s if sub_is(s, &["KILL", "PAUSE", "UNPAUSE", "UNBLOCK"]) => Kind::Guarded,
        // A mode of the server connection: on a connection the client shares or borrows it
        // would apply to other clients' commands, so no allow-list can make it the client's.
        s if sub_is(s, &["NO-EVICT", "NO-TOUCH"]) => Kind::Unsupported,
        s if sub_is(s, &["CAPA"]) => local(Local::ClientCapa),
        s if sub_is(s, &["HELP"]) => Kind::Read,
        // Any other subcommand would change the state of a connection other clients share.
        None => Kind::Read,
        Some(_) => Kind::Unsupported,
    }
}

fn acl_kind(sub: Option<&[u8]>) -> Kind {
    match sub {
        s if sub_is(s, &["WHOAMI"]) => Kind::Local(Local::AclWhoami),
        s if sub_is(s, &["CAT", "GENPASS", "HELP"]) => Kind::Read,
        _ => Kind::Guarded,
    }
}

fn config_kind(sub: Option<&[u8]>) -> Kind {
    if sub_is(sub, &["GET", "HELP"]) {
        Kind::Read
    } else {
        Kind::Guarded
    }
}

/// XREAD and XREADGROUP block only with a BLOCK option before STREAMS.
fn stream_read_kind(req: &Request, spec: Option<&CommandSpec>) -> Kind {
    let args = req.args();
    let blocking = args
        .iter()
        .skip(1)
        .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
        .any(|a| a.eq_ignore_ascii_case(b"BLOCK"));
    if blocking {
        Kind::Blocking
    } else if spec.is_some_and(|s| s.has(F_WRITE)) {
        Kind::Write
    } else {
        Kind::Read
    }
}

/// The name of a guarded command as an operator writes it in the allow-list: `CONFIG|SET`
/// for a subcommand of a container, `DEBUG` otherwise.
pub fn guard_names(req: &Request) -> (String, Option<String>) {
    let name = String::from_utf8_lossy(req.name()).to_ascii_uppercase();
    let spec = lookup(req.name(), req.arg1());
    let sub = spec
        .filter(|s| !s.sub.is_empty())
        .map(|s| format!("{name}|{}", String::from_utf8_lossy(s.sub)));
    (name, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(args: &[&str]) -> Kind {
        classify(&Request::from_args(args)).kind
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        for w in COMMANDS.windows(2) {
            assert!((w[0].name, w[0].sub) < (w[1].name, w[1].sub));
        }
    }

    #[test]
    fn data_commands_by_flags() {
        assert_eq!(kind(&["get", "k"]), Kind::Read);
        assert_eq!(kind(&["SET", "k", "v"]), Kind::Write);
        assert_eq!(kind(&["EVAL", "return 1", "0"]), Kind::Write);
        assert_eq!(kind(&["EVAL_RO", "return 1", "0"]), Kind::Read);
        assert_eq!(kind(&["BLPOP", "l", "0"]), Kind::Blocking);
        assert_eq!(kind(&["BZPOPMIN", "z", "1"]), Kind::Blocking);
        assert_eq!(kind(&["NOSUCHCOMMAND"]), Kind::Write);
        assert_eq!(kind(&["PUBLISH", "c", "m"]), Kind::Write);
    }

    #[test]
    fn stream_reads_block_only_with_block() {
        assert_eq!(kind(&["XREAD", "STREAMS", "s", "0"]), Kind::Read);
        assert_eq!(
            kind(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]),
            Kind::Blocking
        );
        assert_eq!(kind(&["XREAD", "STREAMS", "block", "0"]), Kind::Read);
        assert_eq!(
            kind(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]),
            Kind::Write
        );
        assert_eq!(
            kind(&[
                "xreadgroup",
                "GROUP",
                "g",
                "c",
                "block",
                "5",
                "STREAMS",
                "s",
                ">"
            ]),
            Kind::Blocking
        );
    }

    #[test]
    fn containers_use_subcommands() {
        assert_eq!(
            kind(&["CLIENT", "setname", "x"]),
            Kind::Local(Local::ClientSetName)
        );
        assert_eq!(kind(&["CLIENT", "KILL", "ID", "1"]), Kind::Guarded);
        assert_eq!(kind(&["CLIENT", "TRACKING", "on"]), Kind::Tracking);
        assert_eq!(kind(&["CONFIG", "GET", "maxmemory"]), Kind::Read);
        assert_eq!(kind(&["CONFIG", "SET", "maxmemory", "1"]), Kind::Guarded);
        assert_eq!(kind(&["ACL", "WHOAMI"]), Kind::Local(Local::AclWhoami));
        assert_eq!(kind(&["ACL", "SETUSER", "x"]), Kind::Guarded);
        assert_eq!(kind(&["PSYNC", "?", "-1"]), Kind::Unsupported);
        assert_eq!(kind(&["script", "kill"]), Kind::Kill);
        assert_eq!(kind(&["FUNCTION", "KILL"]), Kind::Kill);
        assert_eq!(kind(&["SCRIPT", "LOAD", "return 1"]), Kind::Write);
        let spec = lookup(b"object", Some(b"encoding")).unwrap();
        assert_eq!(spec.sub, b"ENCODING");
        assert!(spec.has(F_READONLY));
    }

    #[test]
    fn arity_comes_from_the_table() {
        let c = classify(&Request::from_args(&["GET"]));
        assert!(!c.arity_ok(1));
        assert!(c.arity_ok(2));
        let c = classify(&Request::from_args(&["MSET", "a", "1"]));
        assert!(c.arity_ok(3) && c.arity_ok(5) && !c.arity_ok(2));
        assert_eq!(c.acl_name(&Request::from_args(&["MSET"])), "mset");
    }

    #[test]
    fn guard_names_name_the_subcommand() {
        let (name, sub) = guard_names(&Request::from_args(&["config", "set", "a", "b"]));
        assert_eq!(name, "CONFIG");
        assert_eq!(sub.as_deref(), Some("CONFIG|SET"));
        let (name, sub) = guard_names(&Request::from_args(&["DEBUG", "SLEEP", "0"]));
        assert_eq!((name.as_str(), sub), ("DEBUG", None));
    }
}
