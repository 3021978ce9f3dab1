//! What a server process knows of commands: the names it lists (`COMMAND LIST`) and the flags
//! of those the compiled table lacks (`COMMAND INFO`). Both are fixed for one process with one
//! set of modules, so they are read once per (run_id, version, modules) and shared by every
//! probe of the process: a probe connection that is reopened, or a node reached under two
//! addresses, does not ask again. A restart (new run_id), an upgrade or a `MODULE LOAD` asks
//! afresh.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::resp::command::learned::Learned;

/// Most processes remembered; beyond it the cache starts over (a fleet restarted many times
/// over a long run must not grow it without bound).
const MAX_PROCESSES: usize = 256;

/// One process's command knowledge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Command names the node knows (lower case), when it answered `COMMAND LIST`.
    pub commands: Option<Arc<HashSet<String>>>,
    /// Flags of the commands the table lacks and of every container's subcommands.
    pub learned: Option<Arc<Learned>>,
}

/// The identity a catalog holds for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    run_id: String,
    version: String,
    modules: Vec<(String, i64)>,
}

impl Identity {
    /// A process by its run_id, version and loaded modules (name, version).
    pub fn new(run_id: &str, version: &str, modules: &[(String, i64)]) -> Self {
        Self {
            run_id: run_id.to_string(),
            version: version.to_string(),
            modules: modules.to_vec(),
        }
    }

    /// Whether this is the process with that run_id, version and modules.
    pub fn is(&self, run_id: &str, version: &str, modules: &[(String, i64)]) -> bool {
        self.run_id == run_id && self.version == version && self.modules == modules
    }
}

/// Catalogs by process identity, shared by every prober of the proxy.
#[derive(Debug, Default)]
pub struct Catalogs {
    known: Mutex<HashMap<Identity, Catalog>>,
}

impl Catalogs {
    /// The catalog read for `id`, if any.
    pub fn get(&self, id: &Identity) -> Option<Catalog> {
        self.lock().get(id).cloned()
    }

    /// Remembers what `id` said.
    pub fn put(&self, id: Identity, catalog: Catalog) {
        let mut known = self.lock();
        if known.len() >= MAX_PROCESSES && !known.contains_key(&id) {
            known.clear();
        }
        known.insert(id, catalog);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, Catalog>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(run_id: &str, version: &str) -> Identity {
        Identity::new(run_id, version, &[])
    }

    #[test]
    fn one_catalog_per_process_identity() {
        let catalogs = Catalogs::default();
        let a = id("aaa", "7.0.15");
        let names: HashSet<String> = ["get".to_string()].into();
        let catalog = Catalog {
            commands: Some(Arc::new(names)),
            learned: None,
        };
        catalogs.put(a.clone(), catalog.clone());
        assert_eq!(catalogs.get(&a), Some(catalog));
        assert_eq!(catalogs.get(&id("aaa", "8.2.3")), None);
        assert_eq!(catalogs.get(&id("bbb", "7.0.15")), None);
        let loaded = Identity::new("aaa", "7.0.15", &[("graph".into(), 1)]);
        assert_eq!(catalogs.get(&loaded), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let catalogs = Catalogs::default();
        for i in 0..(MAX_PROCESSES * 2 + 1) {
            catalogs.put(id(&i.to_string(), "7"), Catalog::default());
            assert!(catalogs.lock().len() <= MAX_PROCESSES);
        }
    }
}
