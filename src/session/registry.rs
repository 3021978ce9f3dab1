//! Every connected client, as `CLIENT LIST` / `CLIENT INFO` show it and as `CLIENT TRACKING
//! ... REDIRECT <id>` needs it (the id a client knows is the proxy's; the redirect must name
//! the server's id of the target client's dedicated connection). Each session owns its entry:
//! it writes its latest command and last input as they happen, and its buffers and the rest
//! of its visible state once per turn of its loop (`session::view`), so another client's
//! `CLIENT LIST` sees it as of that session's latest turn. The entry leaves with the session.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::NodeId;
use crate::resp::command::{row_of, spec_at, CommandSpec};

/// What a client looks like from outside its session.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// CLIENT SETNAME.
    pub name: String,
    /// Selected database.
    pub db: u32,
    /// Authenticated user.
    pub user: String,
    /// Protocol number.
    pub resp: i64,
    /// CLIENT SETINFO.
    pub lib_name: String,
    /// CLIENT SETINFO.
    pub lib_ver: String,
    /// Subscription counts.
    pub sub: usize,
    /// Pattern subscription counts.
    pub psub: usize,
    /// Shard subscription counts.
    pub ssub: usize,
    /// Commands queued in MULTI (-1 outside MULTI).
    pub multi: i64,
    /// The dedicated connection, when pinned: its node and the server's id for it.
    pub pinned: Option<(Arc<NodeId>, i64)>,
    /// The dedicated connection in use, pinned or borrowed for a blocking command.
    pub dedicated: Option<(Arc<NodeId>, i64)>,
    /// Tracking redirect (CLIENT GETREDIR).
    pub redir: i64,
}

/// Buffer sizes of a client, as `CLIENT LIST` shows them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Unprocessed input bytes.
    pub qbuf: usize,
    /// Free space in the input buffer.
    pub qbuf_free: usize,
    /// Bytes of a buffered MULTI block.
    pub multi_mem: usize,
    /// Input buffer size.
    pub rbs: usize,
    /// Output bytes waiting to be written.
    pub obl: usize,
    /// Output bytes held in reply slots.
    pub omem: usize,
    /// Commands dispatched and not yet answered.
    pub oll: usize,
}

/// How many numbers [`Memory`] holds.
const MEMORY_FIELDS: usize = 7;

impl Memory {
    fn fields(self) -> [usize; MEMORY_FIELDS] {
        [
            self.qbuf,
            self.qbuf_free,
            self.multi_mem,
            self.rbs,
            self.obl,
            self.omem,
            self.oll,
        ]
    }

    fn from_fields(f: [usize; MEMORY_FIELDS]) -> Self {
        let [qbuf, qbuf_free, multi_mem, rbs, obl, omem, oll] = f;
        Self {
            qbuf,
            qbuf_free,
            multi_mem,
            rbs,
            obl,
            omem,
            oll,
        }
    }
}

/// One client's entry.
#[derive(Debug)]
pub struct Entry {
    /// Proxy client id (CLIENT ID).
    pub id: u64,
    /// Client address.
    pub addr: SocketAddr,
    /// Address it connected to.
    pub laddr: SocketAddr,
    /// File descriptor of the client socket (-1 when unknown).
    pub fd: i64,
    since: Instant,
    /// When the client last sent something, in milliseconds since `since` (the session's
    /// idle deadline reads it too: one clock for both).
    last_input_ms: AtomicU64,
    /// Buffer sizes, as of the session's latest turn.
    mem: [AtomicUsize; MEMORY_FIELDS],
    /// The client's latest command, as its table row plus one (0: none yet). Written by the
    /// session for every command it handles, fast path included, and read by `CLIENT LIST`:
    /// the command is never a copy that may be stale.
    cmd: AtomicUsize,
    view: Mutex<View>,
    /// Cancelled by another client's `CLIENT KILL`: the session closes at once.
    killed: tokio_util::sync::CancellationToken,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates the visible state.
    pub fn update(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.lock());
    }

    /// Closes this client (another client's `CLIENT KILL`).
    pub fn kill(&self) {
        self.killed.cancel();
    }

    /// Resolves when another client killed this one.
    pub fn killed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.killed.cancelled()
    }

    /// Seconds since the client connected.
    pub fn age(&self) -> u64 {
        self.since.elapsed().as_secs()
    }

    /// Records the command the client just sent (`None`: one the table does not know).
    pub fn note_cmd(&self, spec: Option<&'static CommandSpec>) {
        let row = spec.and_then(row_of).map_or(0, |r| r + 1);
        self.cmd.store(row, Ordering::Relaxed);
    }

    /// The client's latest command as `CLIENT LIST` names it (`get`, `client|list`).
    fn cmd_name(&self) -> Option<String> {
        let row = self.cmd.load(Ordering::Relaxed).checked_sub(1)?;
        let spec = spec_at(row)?;
        let mut name = String::from_utf8_lossy(spec.name).to_ascii_lowercase();
        if !spec.sub.is_empty() {
            name.push('|');
            name.push_str(&String::from_utf8_lossy(spec.sub).to_ascii_lowercase());
        }
        Some(name)
    }

    /// Records input from the client (for `idle=` and the idle timeout).
    pub fn touch(&self) {
        let ms = self.since.elapsed().as_millis();
        self.last_input_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the client last sent something (to the millisecond).
    pub fn last_input(&self) -> Instant {
        self.since + Duration::from_millis(self.last_input_ms.load(Ordering::Relaxed))
    }

    /// Records the buffer sizes of the session's latest turn.
    pub fn show_memory(&self, m: Memory) {
        for (cell, value) in self.mem.iter().zip(m.fields()) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// The buffer sizes of the session's latest turn.
    fn memory(&self) -> Memory {
        Memory::from_fields(self.mem.each_ref().map(|c| c.load(Ordering::Relaxed)))
    }

    /// A copy of the visible state.
    pub fn view(&self) -> View {
        self.lock().clone()
    }

    /// The line `CLIENT INFO` and `CLIENT LIST` print for this client, in Redis's format.
    pub fn line(&self) -> String {
        let v = self.view();
        let idle = self.last_input().elapsed();
        let mut out = String::new();
        let m = self.memory();
        let flags = if v.sub + v.psub + v.ssub > 0 {
            "P"
        } else {
            "N"
        };
        let cmd = self.cmd_name().unwrap_or_else(|| "NULL".into());
        let _ = write!(
            out,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} sub={} psub={} ssub={} multi={} \
             qbuf={} qbuf-free={} argv-mem=0 multi-mem={} rbs={} rbp={} obl={} oll={} omem={} tot-mem={} events={} \
             cmd={cmd} user={} redir={} resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            v.name,
            self.since.elapsed().as_secs(),
            idle.as_secs(),
            v.db,
            v.sub,
            v.psub,
            v.ssub,
            v.multi,
            m.qbuf,
            m.qbuf_free,
            m.multi_mem,
            m.rbs,
            m.rbs,
            m.obl,
            m.oll,
            m.omem,
            m.rbs + m.obl + m.omem + m.multi_mem,
            if m.obl > 0 { "rw" } else { "r" },
            v.user,
            v.redir,
            v.resp,
            v.lib_name,
            v.lib_ver,
        );
        out
    }
}

/// All clients.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new client and gives it an id.
    pub fn join(&self, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Arc<Entry> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let entry = Arc::new(Entry {
            id,
            addr,
            laddr,
            fd,
            since: now,
            last_input_ms: AtomicU64::new(0),
            mem: Default::default(),
            cmd: AtomicUsize::new(0),
            killed: tokio_util::sync::CancellationToken::new(),
            view: Mutex::new(View {
                multi: -1,
                resp: 2,
                redir: -1,
                ..View::default()
            }),
        });
        self.lock().insert(id, Arc::clone(&entry));
        entry
    }

    /// Removes a client.
    pub fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// A client by id.
    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        self.lock().get(&id).cloned()
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every client, ordered by id.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut entries: Vec<Arc<Entry>> = self.lock().values().cloned().collect();
        entries.sort_by_key(|e| e.id);
        entries
    }

    /// `CLIENT LIST` text (one line per client, ordered by id).
    pub fn list(&self) -> String {
        let mut entries: Vec<Arc<Entry>> = self.lock().values().cloned().collect();
        entries.sort_by_key(|e| e.id);
        entries.iter().map(|e| e.line() + "\n").collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_shows_every_client_once() {
        let r = Registry::default();
        let local = "127.0.0.1:6380".parse().unwrap();
        let a = r.join("127.0.0.1:1000".parse().unwrap(), local, 7);
        let b = r.join("127.0.0.1:1001".parse().unwrap(), local, 8);
        a.update(|v| v.name = "worker".into());
        let list = r.list();
        assert_eq!(list.lines().count(), 2);
        assert!(list.contains(&format!("id={} addr=127.0.0.1:1000", a.id)));
        assert!(list.contains("name=worker"));
        for field in [
            "qbuf=",
            "argv-mem=",
            "tot-mem=",
            "omem=",
            "oll=",
            "redir=-1",
            "fd=7",
        ] {
            assert!(list.contains(field), "{field} missing in {list}");
        }
        r.leave(b.id);
        assert_eq!(r.len(), 1);
        assert!(r.get(b.id).is_none());
    }
}
