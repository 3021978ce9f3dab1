//! The nodes and Sentinels the failover task knows, kept in step with DNS: every configured
//! name is watched; an address that appears gets its own probe (or Sentinel watcher) and is
//! used only once its probes pass; an address that disappears is dropped, its connections
//! drained. Nodes named by Sentinel but not configured are watched too, in a site of their own.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendAuth, Dialer, Endpoint};
use crate::config::{Quorum, Site};
use crate::tls::NodeTlsSet;
use crate::topology::catalog::Catalogs;
use crate::topology::discovery::{Resolver, Target, Update};
use crate::topology::health::{HealthConfig, Monitor, Report};
use crate::topology::probe::Prober;
use crate::topology::sentinel::{MasterView, Report as SentinelReport, SentinelSettings, Watcher};
use crate::topology::witness;

pub use crate::topology::LEARNED_SITE;

/// What a DNS watch feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feeds {
    /// Redis nodes of a site.
    Nodes(usize),
    /// Sentinels.
    Sentinels,
    /// Witnesses (voting members only checked for reachability).
    Witnesses,
}

/// A DNS update tagged with what it feeds.
#[derive(Debug)]
pub struct DnsEvent {
    /// What the name feeds.
    pub feeds: Feeds,
    /// The update.
    pub update: Update,
}

/// A probed node.
#[derive(Debug)]
pub struct Node {
    /// Its address and name.
    pub endpoint: Endpoint,
    /// Site index.
    pub site: usize,
    monitor: Monitor,
    /// Latest report.
    pub last: Option<Report>,
    /// Latest successful observation: kept through a failed probe, since one lost probe must
    /// not move traffic while the node still counts as healthy (hysteresis).
    pub seen: Option<crate::topology::Observation>,
    /// When `seen` was taken.
    pub seen_at: Option<Instant>,
}

impl Node {
    /// Probes now.
    pub fn recheck(&self) {
        self.monitor.recheck();
    }
}

/// A watched Sentinel.
#[derive(Debug)]
pub struct Sentinel {
    /// Its address.
    pub endpoint: Endpoint,
    watcher: Watcher,
    /// Latest view and when its query was sent.
    pub last: Option<(Instant, Result<MasterView, String>)>,
}

/// Channels the registry's tasks report on.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// DNS updates.
    pub dns: mpsc::Sender<DnsEvent>,
    /// Probe reports.
    pub health: mpsc::Sender<Report>,
    /// Sentinel reports.
    pub sentinel: mpsc::Sender<SentinelReport>,
    /// Witness checks.
    pub witness: mpsc::Sender<witness::Check>,
}

/// A witness being checked.
#[derive(Debug)]
pub struct WitnessState {
    _check: witness::Witness,
    /// Its latest check.
    pub last: Option<witness::Check>,
}

/// How to reach things.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Resolver.
    pub resolver: Resolver,
    /// Dialer.
    pub dialer: Dialer,
    /// Credentials for probes.
    pub auth: BackendAuth,
    /// Probe timing.
    pub health: HealthConfig,
    /// Sentinel settings (Sentinel authority only).
    pub sentinel: Option<SentinelSettings>,
    /// TLS per site.
    pub tls: Arc<NodeTlsSet>,
}

/// Everything known.
#[derive(Debug)]
pub struct Registry {
    /// Sites (configured, then the learned one).
    pub sites: Vec<Site>,
    /// Nodes by address.
    pub nodes: BTreeMap<SocketAddr, Node>,
    /// Sentinels by address.
    pub sentinels: BTreeMap<SocketAddr, Sentinel>,
    /// Configured Sentinel names (each counts as at least one voter).
    pub sentinel_names: usize,
    /// Witnesses by address.
    pub witnesses: BTreeMap<SocketAddr, WitnessState>,
    /// Configured witness names (each counts as at least one voting member).
    witness_names: Vec<Target>,
    /// Current answer of each watched name, and the token stopping its watch.
    answers: HashMap<(Feeds, Target), (Vec<Endpoint>, CancellationToken)>,
    /// What each node process knows of commands, read once per process.
    catalogs: Arc<Catalogs>,
    reach: Reach,
    out: Outputs,
    stop: CancellationToken,
}

impl Registry {
    /// Starts watching every configured name.
    pub fn new(
        (sites, witnesses): (Vec<Site>, &[String]),
        reach: Reach,
        out: Outputs,
        stop: CancellationToken,
    ) -> Self {
        let mut reg = Self {
            sentinel_names: sites.iter().map(|s| s.sentinels.len()).sum(),
            witnesses: BTreeMap::new(),
            witness_names: witnesses.iter().filter_map(|w| host_target(w)).collect(),
            sites,
            nodes: BTreeMap::new(),
            sentinels: BTreeMap::new(),
            answers: HashMap::new(),
            catalogs: Arc::default(),
            reach,
            out,
            stop,
        };
        reg.sites.push(Site {
            name: LEARNED_SITE.into(),
            quorum: Quorum::Count(1),
            priority: u32::MAX,
            ..Site::default()
        });
        for (i, site) in reg.sites.clone().iter().enumerate() {
            for t in site.nodes.iter().filter_map(|n| host_target(n)) {
                reg.watch(Feeds::Nodes(i), t);
            }
            for srv in &site.srv {
                reg.watch(Feeds::Nodes(i), Target::Srv(srv.clone()));
            }
            for t in site.sentinels.iter().filter_map(|n| host_target(n)) {
                reg.watch(Feeds::Sentinels, t);
            }
        }
        for t in reg.witness_names.clone() {
            reg.watch(Feeds::Witnesses, t);
        }
        reg
    }

    fn watch(&mut self, feeds: Feeds, target: Target) {
        if self.answers.contains_key(&(feeds, target.clone())) {
            return;
        }
        let token = self.stop.child_token();
        self.answers
            .insert((feeds, target.clone()), (Vec::new(), token.clone()));
        let tx = self.out.dns.clone();
        let (fwd_tx, mut fwd_rx) = mpsc::channel::<Update>(4);
        let resolver = self.reach.resolver.clone();
        tokio::spawn(resolver.watch(target, fwd_tx, token));
        tokio::spawn(async move {
            while let Some(update) = fwd_rx.recv().await {
                if tx.send(DnsEvent { feeds, update }).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Applies a DNS update; returns whether the set of nodes or Sentinels changed.
    pub fn on_dns(&mut self, ev: DnsEvent) -> bool {
        let key = (ev.feeds, ev.update.target.clone());
        let Some((answer, _)) = self.answers.get_mut(&key) else {
            // A watch stopped by a reconfiguration: its late answer is no longer wanted.
            return false;
        };
        if *answer == ev.update.endpoints {
            return false;
        }
        *answer = ev.update.endpoints;
        match ev.feeds {
            Feeds::Nodes(site) => self.reconcile_nodes(site),
            Feeds::Sentinels => self.reconcile_sentinels(),
            Feeds::Witnesses => self.reconcile_witnesses(),
        }
        true
    }

    /// Makes sure a node Sentinel named is watched (in the learned site unless configured).
    pub fn learn(&mut self, host: &str, port: u16) {
        let target = Target::Host {
            host: host.to_string(),
            port,
        };
        let known = self.answers.iter().any(|((f, t), (eps, _))| {
            matches!(f, Feeds::Nodes(_))
                && (t == &target || eps.iter().any(|e| e.name.as_ref() == target.to_string()))
        });
        if !known {
            self.watch(Feeds::Nodes(self.sites.len() - 1), target);
        }
    }

    fn reconcile_nodes(&mut self, site: usize) {
        let tls = self.reach.tls.for_site(&self.sites[site].name);
        let wanted: BTreeMap<SocketAddr, Endpoint> = self
            .answers
            .iter()
            .filter(|((f, _), _)| *f == Feeds::Nodes(site))
            .flat_map(|(_, (eps, _))| eps.iter().map(|e| (e.addr, with_tls(e, &tls))))
            .collect();
        for (addr, n) in self.nodes.iter_mut() {
            // A node now listed by this site belongs to it (sites can be reordered by a
            // reload).
            if wanted.contains_key(addr) {
                n.site = site;
            }
        }
        self.nodes.retain(|addr, n| {
            let keep = n.site != site || wanted.contains_key(addr);
            if !keep {
                tracing::info!(node = %n.endpoint, site = %self.sites[site].name, "node no longer listed (DNS or configuration); dropping it");
            }
            // Changed TLS settings (a reload) need a new probe and new connections.
            keep && (n.site != site || wanted.get(addr) == Some(&n.endpoint))
        });
        for (addr, ep) in wanted {
            if self.nodes.contains_key(&addr) {
                continue;
            }
            tracing::info!(node = %ep, site = %self.sites[site].name, "node found; probing before use");
            let prober = Prober::new(
                ep.clone(),
                (self.reach.dialer, self.reach.auth.clone()),
                self.reach.health.timeout,
                Arc::clone(&self.catalogs),
            );
            let monitor = Monitor::spawn(prober, self.reach.health, self.out.health.clone());
            self.nodes.insert(
                addr,
                Node {
                    endpoint: ep,
                    site,
                    monitor,
                    last: None,
                    seen: None,
                    seen_at: None,
                },
            );
        }
    }

    fn reconcile_sentinels(&mut self) {
        let Some(settings) = self.reach.sentinel.clone() else {
            return;
        };
        let wanted: BTreeMap<SocketAddr, Endpoint> = self
            .answers
            .iter()
            .filter(|((f, _), _)| *f == Feeds::Sentinels)
            .flat_map(|((_, t), (eps, _))| {
                let tls = self.sentinel_tls(t);
                eps.iter().map(move |e| (e.addr, with_tls(e, &tls)))
            })
            .collect();
        self.sentinels
            .retain(|addr, s| wanted.get(addr) == Some(&s.endpoint));
        for (addr, ep) in wanted {
            if self.sentinels.contains_key(&addr) {
                continue;
            }
            let watcher = Watcher::spawn(
                ep.clone(),
                self.reach.dialer,
                settings.clone(),
                self.out.sentinel.clone(),
            );
            self.sentinels.insert(
                addr,
                Sentinel {
                    endpoint: ep,
                    watcher,
                    last: None,
                },
            );
        }
    }

    fn reconcile_witnesses(&mut self) {
        let wanted: Vec<SocketAddr> = self
            .answers
            .iter()
            .filter(|((f, _), _)| *f == Feeds::Witnesses)
            .flat_map(|(_, (eps, _))| eps.iter().map(|e| e.addr))
            .collect();
        self.witnesses.retain(|addr, _| wanted.contains(addr));
        for addr in wanted {
            let health = self.reach.health;
            let out = self.out.witness.clone();
            self.witnesses.entry(addr).or_insert_with(|| WitnessState {
                _check: witness::Witness::spawn(addr, health.interval, health.timeout, out),
                last: None,
            });
        }
    }

    /// Voting members of the `nodes` authority: configured nodes and witnesses (each name
    /// counts at least once).
    pub fn members(&self) -> usize {
        let learned = self.sites.len() - 1;
        let nodes = self.nodes.values().filter(|n| n.site != learned).count();
        nodes + self.witness_names.len().max(self.witnesses.len())
    }

    /// Applies reloaded sites: names no longer configured stop being watched (their nodes
    /// and Sentinels are dropped), new ones are watched; nodes still listed keep their probes.
    pub fn reconfigure(&mut self, sites: Vec<Site>, tls: Arc<NodeTlsSet>) {
        self.reach.tls = tls;
        let learned = self.sites.len() - 1;
        let new_learned = sites.len();
        let index_of = |old: usize, sites: &[Site], names: &[String]| -> Option<usize> {
            if old == learned {
                return Some(new_learned);
            }
            sites.iter().position(|s| s.name == names[old])
        };
        let names: Vec<String> = self.sites.iter().map(|s| s.name.clone()).collect();
        let mut wanted: Vec<(Feeds, Target)> = self
            .witness_names
            .iter()
            .map(|t| (Feeds::Witnesses, t.clone()))
            .collect();
        for (i, site) in sites.iter().enumerate() {
            wanted.extend(
                site.nodes
                    .iter()
                    .filter_map(|n| host_target(n))
                    .map(|t| (Feeds::Nodes(i), t)),
            );
            wanted.extend(
                site.srv
                    .iter()
                    .map(|n| (Feeds::Nodes(i), Target::Srv(n.clone()))),
            );
            wanted.extend(
                site.sentinels
                    .iter()
                    .filter_map(|n| host_target(n))
                    .map(|t| (Feeds::Sentinels, t)),
            );
        }
        let old = std::mem::take(&mut self.answers);
        for ((feeds, target), (eps, token)) in old {
            let key = match feeds {
                Feeds::Nodes(i) => index_of(i, &sites, &names).map(|j| (Feeds::Nodes(j), target)),
                Feeds::Sentinels | Feeds::Witnesses => Some((feeds, target)),
            };
            match key {
                Some(k) if k.0 == Feeds::Nodes(new_learned) || wanted.contains(&k) => {
                    self.answers.insert(k, (eps, token));
                }
                _ => token.cancel(),
            }
        }
        self.nodes
            .retain(|_, n| match index_of(n.site, &sites, &names) {
                Some(j) => {
                    n.site = j;
                    true
                }
                None => false,
            });
        self.sentinel_names = sites.iter().map(|s| s.sentinels.len()).sum();
        let mut all = sites;
        all.push(self.sites[learned].clone());
        self.sites = all;
        for (feeds, target) in wanted {
            self.watch(feeds, target);
        }
        for i in 0..self.sites.len() {
            self.reconcile_nodes(i);
        }
        self.reconcile_sentinels();
    }

    /// Voters for the majority rule: configured names, or resolved addresses if more.
    pub fn voters(&self) -> usize {
        self.sentinel_names.max(self.sentinels.len())
    }

    /// Asks every node and Sentinel for an immediate round.
    pub fn recheck_all(&self) {
        self.nodes.values().for_each(Node::recheck);
        self.sentinels.values().for_each(|s| s.watcher.recheck());
    }
}

impl Registry {
    /// A Sentinel uses the TLS settings of the site that lists it.
    fn sentinel_tls(&self, target: &Target) -> Option<Arc<crate::tls::Connector>> {
        let site = self.sites.iter().find(|s| {
            s.sentinels
                .iter()
                .any(|n| host_target(n).as_ref() == Some(target))
        });
        match site {
            Some(s) => self.reach.tls.for_site(&s.name),
            None => self.reach.tls.for_site(LEARNED_SITE),
        }
    }
}

fn with_tls(e: &Endpoint, tls: &Option<Arc<crate::tls::Connector>>) -> Endpoint {
    Endpoint {
        tls: tls.clone(),
        ..e.clone()
    }
}

/// `host:port` as a DNS target.
pub(super) fn host_target(s: &str) -> Option<Target> {
    let (host, port) = crate::config::split_host_port(s)?;
    Some(Target::Host {
        host: host.to_string(),
        port,
    })
}
