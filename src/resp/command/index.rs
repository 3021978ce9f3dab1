//! The compiled table indexed by name: a hash map from each command name to its row and the
//! rows of its subcommands (sorted, searched by bisection), with every row's [`Kind`] worked
//! out once. Every command a client sends is looked up here, so the lookup allocates nothing
//! and hashes with FNV-1a.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::spec::CommandSpec;
use super::table::COMMANDS;
use super::{data_kind, special_kind, Kind, MAX_NAME};

/// Upper-cases `name` into `buf`; `None` when too long to be a known command.
pub(super) fn upper<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<&'b [u8]> {
    if name.len() > MAX_NAME {
        return None;
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    Some(out)
}

/// A command name's place in the table.
#[derive(Debug, Clone)]
struct Top {
    /// Its own row.
    row: usize,
    /// Rows of its subcommands (empty for a plain command).
    subs: std::ops::Range<usize>,
}

/// The table indexed by name, with every row's kind worked out once.
#[derive(Debug)]
struct Index {
    tops: HashMap<&'static [u8], Top, BuildHasherDefault<Fnv>>,
    kinds: Vec<Kind>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut tops: HashMap<&'static [u8], Top, BuildHasherDefault<Fnv>> = HashMap::default();
        for (i, row) in COMMANDS.iter().enumerate() {
            let top = tops.entry(row.name).or_insert(Top {
                row: i,
                subs: i + 1..i + 1,
            });
            if !row.sub.is_empty() {
                top.subs.end = i + 1;
            }
        }
        let kinds = COMMANDS
            .iter()
            .map(|row| {
                special_kind(row.name, (!row.sub.is_empty()).then_some(row.sub))
                    .unwrap_or_else(|| data_kind(Some(row)))
            })
            .collect();
        Index { tops, kinds }
    })
}

/// The handling kind of table row `row`.
pub(super) fn kind_of(row: usize) -> Kind {
    index().kinds[row]
}

/// FNV-1a: command names are short and trusted to be few; this hash is several times
/// cheaper than the default one on the path every command takes.
#[derive(Debug, Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Finds the table row for `name` (and `sub`, for container commands such as CLIENT).
pub fn lookup(name: &[u8], sub: Option<&[u8]>) -> Option<&'static CommandSpec> {
    find(name, sub).map(|(row, _)| &COMMANDS[row])
}

/// Row of `name`/`sub`, and whether the subcommand itself was found.
pub(super) fn find(name: &[u8], sub: Option<&[u8]>) -> Option<(usize, bool)> {
    let mut nb = [0u8; MAX_NAME];
    let name = upper(name, &mut nb)?;
    let top = index().tops.get(name)?;
    if top.subs.is_empty() {
        return Some((top.row, true));
    }
    let mut sb = [0u8; MAX_NAME];
    let Some(sub) = sub.and_then(|s| upper(s, &mut sb)) else {
        return Some((top.row, false));
    };
    let rows = &COMMANDS[top.subs.clone()];
    match rows.binary_search_by(|r| r.sub.cmp(sub)) {
        Ok(i) => Some((top.subs.start + i, true)),
        Err(_) => Some((top.row, false)),
    }
}

/// Whether the compiled table knows the command `name` (any case).
pub fn in_table(name: &[u8]) -> bool {
    find(name, None).is_some()
}

/// Whether `name` (any case) has subcommands in the compiled table.
pub fn is_container(name: &[u8]) -> bool {
    let mut nb = [0u8; MAX_NAME];
    upper(name, &mut nb)
        .and_then(|n| index().tops.get(n))
        .is_some_and(|t| !t.subs.is_empty())
}

/// The commands of the compiled table that have subcommands (upper case).
pub fn containers() -> Vec<&'static [u8]> {
    let mut names: Vec<&'static [u8]> = index()
        .tops
        .iter()
        .filter(|(_, t)| !t.subs.is_empty())
        .map(|(n, _)| *n)
        .collect();
    names.sort_unstable();
    names
}

/// The row of `spec` in the compiled table (`spec` is a reference into it), so that a command
/// can be remembered in an atomic.
pub fn row_of(spec: &'static CommandSpec) -> Option<usize> {
    let base = COMMANDS.as_ptr() as usize;
    let at = spec as *const CommandSpec as usize;
    let row = at.checked_sub(base)? / std::mem::size_of::<CommandSpec>();
    (row < COMMANDS.len()).then_some(row)
}

/// The table row `row`.
pub fn spec_at(row: usize) -> Option<&'static CommandSpec> {
    COMMANDS.get(row)
}
