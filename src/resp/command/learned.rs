//! Commands learned from the server at run time. The compiled [`super::table`] was read from one
//! server version; a newer server (Redis 8, Valkey 9) or a module knows commands it lacks. The
//! health probe asks each node for the flags of those (`COMMAND INFO`), and the failover task
//! installs the verified master's answer here, so that an unknown name is handled by the
//! server's own word: `readonly` ones may be re-sent and are open to read-only users, `blocking`
//! ones run on a dedicated connection like `BLPOP`, `admin` ones are guarded, and so on.
//! Subcommands the table lacks of containers that change a connection's or the server's state
//! are classified the same way, or refused while nothing is known of them.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::Kind;
use crate::resp::decode::Reply;

/// What the server says of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `readonly`.
    pub readonly: bool,
    /// `write`.
    pub write: bool,
    /// `blocking`.
    pub blocking: bool,
    /// `pubsub`.
    pub pubsub: bool,
    /// `admin`.
    pub admin: bool,
}

impl Flags {
    fn from_reply(flags: &Reply) -> Self {
        let mut f = Flags::default();
        for flag in flags.as_array().unwrap_or_default() {
            match flag
                .as_text()
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("readonly") => f.readonly = true,
                Some("write") => f.write = true,
                Some("blocking") => f.blocking = true,
                Some("pubsub") => f.pubsub = true,
                Some("admin") => f.admin = true,
                _ => {}
            }
        }
        f
    }

    /// How the proxy handles a command with these flags.
    pub fn kind(self) -> Kind {
        if self.pubsub {
            // Subscriptions of kinds the proxy does not know cannot be moved or counted.
            Kind::Unsupported
        } else if self.admin {
            Kind::Guarded
        } else if self.blocking {
            Kind::Blocking
        } else if self.write {
            Kind::Write
        } else {
            // Neither `write` nor anything above: the server says it changes no data.
            Kind::Read
        }
    }
}

/// The commands one server told about, by lower-case name (`container|sub` for subcommands).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Learned {
    flags: HashMap<String, Flags>,
}

impl Learned {
    /// Parses `COMMAND INFO` replies (each entry: name, arity, flags, ..., and from Redis 7
    /// on, its subcommands as entries of the same shape at position 9).
    pub fn from_info(entries: &[Reply]) -> Self {
        let mut learned = Learned::default();
        for entry in entries {
            learned.add(entry);
        }
        learned
    }

    fn add(&mut self, entry: &Reply) {
        let Some(fields) = entry.as_array() else {
            return;
        };
        let (Some(name), Some(flags)) = (fields.first().and_then(Reply::as_text), fields.get(2))
        else {
            return;
        };
        self.flags
            .insert(name.to_ascii_lowercase(), Flags::from_reply(flags));
        for sub in fields.get(9).and_then(Reply::as_array).unwrap_or_default() {
            self.add(sub);
        }
    }

    /// The flags of `name` (and `sub`, for a container), if the server told them.
    pub fn flags(&self, name: &[u8], sub: Option<&[u8]>) -> Option<Flags> {
        let mut key = String::from_utf8_lossy(name).to_ascii_lowercase();
        if let Some(sub) = sub {
            key.push('|');
            key.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
        }
        self.flags.get(&key).copied()
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }
}

/// The verified master's learned commands, read by [`super::classify`].
static CURRENT: ArcSwapOption<Learned> = ArcSwapOption::const_empty();

/// Installs what the master in use told (the failover task, when it verifies a master).
pub fn install(learned: Option<Arc<Learned>>) {
    let count = learned.as_ref().map_or(0, |l| l.flags.len());
    let before = CURRENT.swap(learned);
    if before.as_ref().map_or(0, |l| l.flags.len()) != count {
        tracing::info!(
            learned = count,
            table = super::table::SOURCE,
            "commands and subcommands the compiled table lacks now follow the master's flags"
        );
    }
}

/// The flags of a command the compiled table lacks, from the master in use.
pub fn lookup(name: &[u8], sub: Option<&[u8]>) -> Option<Flags> {
    CURRENT.load().as_ref()?.flags(name, sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> Reply {
        Reply::Str(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn entry(name: &str, flags: &[&str], subs: Vec<Reply>) -> Reply {
        let mut fields = vec![
            s(name),
            Reply::Int(-2),
            Reply::Array(flags.iter().map(|f| s(f)).collect()),
            Reply::Int(1),
            Reply::Int(1),
            Reply::Int(1),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
        ];
        fields.push(Reply::Array(subs));
        Reply::Array(fields)
    }

    #[test]
    fn kinds_follow_the_server_flags() {
        let learned = Learned::from_info(&[
            entry("hgetex", &["write", "fast"], Vec::new()),
            entry("graph.ro_query", &["readonly"], Vec::new()),
            entry("bf.blockingthing", &["write", "blocking"], Vec::new()),
            entry(
                "client",
                &[],
                vec![entry(
                    "client|capa",
                    &["noscript", "loading", "stale"],
                    Vec::new(),
                )],
            ),
            entry("module.admin", &["admin", "noscript"], Vec::new()),
            entry("x.sub", &["pubsub"], Vec::new()),
        ]);
        let kind = |n: &str, sub: Option<&str>| {
            learned
                .flags(n.as_bytes(), sub.map(str::as_bytes))
                .map(Flags::kind)
        };
        assert_eq!(kind("HGETEX", None), Some(Kind::Write));
        assert_eq!(kind("GRAPH.RO_QUERY", None), Some(Kind::Read));
        assert_eq!(kind("bf.blockingthing", None), Some(Kind::Blocking));
        assert_eq!(kind("CLIENT", Some("CAPA")), Some(Kind::Read));
        assert_eq!(kind("module.admin", None), Some(Kind::Guarded));
        assert_eq!(kind("x.sub", None), Some(Kind::Unsupported));
        assert_eq!(kind("nothing", None), None);
        assert_eq!(learned.len(), 7);
    }
}
