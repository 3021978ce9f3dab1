//! The shape of one command-table row: what Redis itself reports about a command in its
//! `COMMAND` reply (arity, flags, ACL categories). Key positions are not kept: every key of a
//! database goes to the same master, so nothing would read them. The proxy's own routing
//! classes are derived from these facts in `command::classify`, never written by hand per
//! command, so that a regenerated table changes behaviour only where Redis changed.

/// Command flags, as named by Redis's `COMMAND` reply.
pub(crate) const F_WRITE: u32 = 1 << 0;
pub(crate) const F_READONLY: u32 = 1 << 1;
pub(crate) const F_DENYOOM: u32 = 1 << 2;
pub(crate) const F_ADMIN: u32 = 1 << 3;
pub(crate) const F_PUBSUB: u32 = 1 << 4;
pub(crate) const F_NOSCRIPT: u32 = 1 << 5;
pub(crate) const F_BLOCKING: u32 = 1 << 6;
pub(crate) const F_LOADING: u32 = 1 << 7;
pub(crate) const F_STALE: u32 = 1 << 8;
pub(crate) const F_SKIP_MONITOR: u32 = 1 << 9;
pub(crate) const F_SKIP_SLOWLOG: u32 = 1 << 10;
pub(crate) const F_FAST: u32 = 1 << 11;
pub(crate) const F_NO_AUTH: u32 = 1 << 12;
pub(crate) const F_NO_MANDATORY_KEYS: u32 = 1 << 14;
pub(crate) const F_NO_MULTI: u32 = 1 << 15;
pub(crate) const F_MOVABLEKEYS: u32 = 1 << 16;
pub(crate) const F_ALLOW_BUSY: u32 = 1 << 17;
pub(crate) const F_ASKING: u32 = 1 << 18;
pub(crate) const F_NO_ASYNC_LOADING: u32 = 1 << 19;

/// ACL categories, as named by Redis (`@read`, `@write`, ...).
pub const C_KEYSPACE: u32 = 1 << 0;
pub const C_READ: u32 = 1 << 1;
pub const C_WRITE: u32 = 1 << 2;
pub const C_SET: u32 = 1 << 3;
pub const C_SORTEDSET: u32 = 1 << 4;
pub const C_LIST: u32 = 1 << 5;
pub const C_HASH: u32 = 1 << 6;
pub const C_STRING: u32 = 1 << 7;
pub const C_BITMAP: u32 = 1 << 8;
pub const C_HYPERLOGLOG: u32 = 1 << 9;
pub const C_GEO: u32 = 1 << 10;
pub const C_STREAM: u32 = 1 << 11;
pub const C_PUBSUB: u32 = 1 << 12;
pub const C_ADMIN: u32 = 1 << 13;
pub const C_FAST: u32 = 1 << 14;
pub const C_SLOW: u32 = 1 << 15;
pub const C_BLOCKING: u32 = 1 << 16;
pub const C_DANGEROUS: u32 = 1 << 17;
pub const C_CONNECTION: u32 = 1 << 18;
pub const C_TRANSACTION: u32 = 1 << 19;
pub const C_SCRIPTING: u32 = 1 << 20;

/// ACL category names in the order of their bits, for parsing `@name` in configuration.
pub const CATEGORY_NAMES: [(&str, u32); 21] = [
    ("keyspace", C_KEYSPACE),
    ("read", C_READ),
    ("write", C_WRITE),
    ("set", C_SET),
    ("sortedset", C_SORTEDSET),
    ("list", C_LIST),
    ("hash", C_HASH),
    ("string", C_STRING),
    ("bitmap", C_BITMAP),
    ("hyperloglog", C_HYPERLOGLOG),
    ("geo", C_GEO),
    ("stream", C_STREAM),
    ("pubsub", C_PUBSUB),
    ("admin", C_ADMIN),
    ("fast", C_FAST),
    ("slow", C_SLOW),
    ("blocking", C_BLOCKING),
    ("dangerous", C_DANGEROUS),
    ("connection", C_CONNECTION),
    ("transaction", C_TRANSACTION),
    ("scripting", C_SCRIPTING),
];

/// One row of the command table.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Upper-case command name.
    pub name: &'static [u8],
    /// Upper-case subcommand name, empty for a top-level row.
    pub sub: &'static [u8],
    /// Redis arity: positive means exactly that many arguments (name included), negative means
    /// at least that many.
    pub arity: i32,
    /// `F_*` bits.
    pub flags: u32,
    /// `C_*` bits.
    pub categories: u32,
}

impl CommandSpec {
    pub(crate) const fn new(
        name: &'static [u8],
        sub: &'static [u8],
        arity: i32,
        flags: u32,
        categories: u32,
    ) -> Self {
        Self {
            name,
            sub,
            arity,
            flags,
            categories,
        }
    }

    pub(crate) fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether `argc` arguments (the name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}
