//! The single writer of the topology. It gathers what DNS, the probes, the Sentinels and the
//! sessions report, decides who the master is ([`decide`]), and publishes a new snapshot (with
//! a higher epoch) whenever that, or the health of a node or site, changed. Every change is
//! logged once, with its reason.
//!
//! HOLD: when a failover is announced (a Sentinel starts one) or the master refuses writes
//! (`-READONLY` and friends seen by a session), the master in use is suspended at once: the
//! snapshot goes to `holding`, its connections are retired, and sessions keep new commands
//! until a master is verified again: a different one, or the same one after a fresh probe
//! shows it writable (for a refusal) or after Sentinel ended or aborted the failover (for an
//! announcement).

pub mod decide;
mod gauges;
mod grant;
pub mod lease;
pub mod operate;
mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Lease, LeaseBoard, NodeId, Pools};
use crate::config::Authority;
use crate::topology::sentinel::Report as SentinelReport;
use crate::topology::{RouteState, Suspension, TopologyHandle};
pub use registry::{Outputs, Reach, Registry, LEARNED_SITE};

/// A Sentinel failover announcement that is never followed by an end or an abort is forgotten
/// after this long, once no Sentinel reports the failover as in progress.
const ANNOUNCE_MAX: Duration = Duration::from_secs(30);

/// What sessions and operators tell the failover task.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A session saw the master in use refuse a command (READONLY, ...) or lose a connection.
    Trouble {
        /// The master the session was using.
        master: Arc<NodeId>,
        /// What happened.
        reason: String,
        /// Whether it proves the master stopped taking writes (a refusal such as READONLY),
        /// rather than only hinting at trouble (a lost connection): only proof suspends it.
        demotion: bool,
    },
    /// A planned switchover starts: suspend the master until another one is verified or
    /// [`Signal::Release`] comes.
    Hold {
        /// The master being switched away from.
        master: Arc<NodeId>,
        /// Why (for logs and clients).
        reason: Suspension,
    },
    /// The planned switchover ended (done or abandoned): lift its hold.
    Release,
    /// A reloaded configuration: new sites (nodes, Sentinels, quorum, priority, TLS).
    Reconfigure(
        Vec<crate::config::Site>,
        std::sync::Arc<crate::tls::NodeTlsSet>,
    ),
}

/// The way to reach the failover task (never blocks; a full channel means the task already
/// has plenty to re-check).
#[derive(Debug, Clone)]
pub struct Signals(pub(crate) mpsc::Sender<Signal>);

impl Signals {
    /// Sends a signal (a reconfiguration waits for room: it must not be lost).
    pub fn send(&self, signal: Signal) {
        if let Signal::Reconfigure(..) = signal {
            let tx = self.0.clone();
            tokio::spawn(async move {
                let _ = tx.send(signal).await;
            });
            return;
        }
        let _ = self.0.try_send(signal);
    }
}

#[derive(Debug, Clone)]
struct Hold {
    since: Instant,
    master: Option<Arc<NodeId>>,
    cause: Suspension,
    /// Held because Sentinel announced a failover (cleared by its end or abort).
    announced: bool,
}

/// Timing and behaviour.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who decides.
    pub authority: Authority,
    /// Active-active failback grace.
    pub failback_after: Duration,
    /// Probe interval (also the decision tick).
    pub interval: Duration,
    /// Probe nodes Sentinel names that the configuration does not list.
    pub learn_nodes: bool,
    /// The write lease's settings.
    pub lease: lease::LeaseSettings,
    /// The configured hold timeout (`None`: derive it from the Sentinels' timing).
    pub hold_timeout: Option<Duration>,
}

/// The failover task.
#[derive(Debug)]
pub struct Failover {
    handle: Arc<TopologyHandle>,
    pool: Pools,
    settings: Settings,
    reg: Registry,
    dns: mpsc::Receiver<registry::DnsEvent>,
    health: mpsc::Receiver<crate::topology::health::Report>,
    sentinel: mpsc::Receiver<SentinelReport>,
    witness: mpsc::Receiver<crate::topology::witness::Check>,
    signals: mpsc::Receiver<Signal>,
    epoch: u64,
    hold: Option<Hold>,
    /// Active-active: the site in use, and since when each site has had quorum.
    site_in_use: Option<usize>,
    up_since: HashMap<usize, Instant>,
    /// run_id of the last verified master, and since when none is verified.
    last_master: Option<String>,
    lost_at: Option<Instant>,
    /// The lease of the master chosen last, with the replication ID it was granted for.
    lease: Option<(Arc<Lease>, String)>,
    /// Where backend connections find that lease.
    leases: Arc<LeaseBoard>,
    /// Where backend connections find their node's liveness.
    liveness: Arc<crate::backend::Liveness>,
    /// How often the Sentinels are asked while a lease must be renewed.
    sentinel_pace: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The Sentinels' timing last said at start-up or when it changed (for one log line).
    told_timing: Option<(Duration, Option<Duration>)>,
}

impl Failover {
    /// Builds the task (it starts DNS watches at once) and the handle sessions signal on.
    pub fn new(
        handle: Arc<TopologyHandle>,
        (pool, leases): (Pools, Arc<LeaseBoard>),
        sites: Vec<crate::config::Site>,
        settings: Settings,
        reach: Reach,
        stop: &CancellationToken,
    ) -> (Self, Signals) {
        let sentinel_pace = reach.sentinel.as_ref().map(|s| Arc::clone(&s.lease_pace));
        let liveness = Arc::clone(pool.0[0].liveness());
        let (dns_tx, dns) = mpsc::channel(64);
        let (health_tx, health) = mpsc::channel(256);
        let (sentinel_tx, sentinel) = mpsc::channel(64);
        let (signal_tx, signals) = mpsc::channel(256);
        let (witness_tx, witness) = mpsc::channel(64);
        let out = Outputs {
            dns: dns_tx,
            health: health_tx,
            sentinel: sentinel_tx,
            witness: witness_tx,
        };
        let witnesses = settings.lease.witnesses.clone();
        let reg = Registry::new((sites, &witnesses), reach, out, stop.child_token());
        let failover = Self {
            handle,
            pool,
            settings,
            reg,
            dns,
            health,
            sentinel,
            witness,
            signals,
            epoch: 0,
            hold: None,
            site_in_use: None,
            up_since: HashMap::new(),
            last_master: None,
            lost_at: None,
            lease: None,
            leases,
            liveness,
            sentinel_pace,
            told_timing: None,
        };
        (failover, Signals(signal_tx))
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.interval);
        loop {
            // The moment the lease lapses is a decision point of its own: the snapshot must
            // stop naming the master as routable then, not at the next report.
            let lapse = self.lease_deadline();
            let at_lapse = async move {
                match lapse {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = at_lapse => {}
                Some(ev) = self.dns.recv() => {
                    self.reg.on_dns(ev);
                }
                Some(r) = self.health.recv() => self.on_health(r),
                Some(r) = self.sentinel.recv() => self.on_sentinel(r),
                Some(c) = self.witness.recv() => {
                    if let Some(w) = self.reg.witnesses.get_mut(&c.addr) {
                        w.last = Some(c);
                    }
                }
                Some(s) = self.signals.recv() => self.on_signal(s),
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.decide();
        }
    }

    fn on_health(&mut self, r: crate::topology::health::Report) {
        let round = crate::backend::liveness::Round {
            answered: r.seen.is_some(),
            busy_for: r.busy_for,
            healthy: r.healthy,
            flipped: r.flipped,
        };
        self.liveness.report(r.endpoint.addr, round);
        if r.flipped {
            tracing::info!(node = %r.endpoint, healthy = r.healthy, error = r.error.as_deref().unwrap_or(""), "node health changed");
        }
        if let Some(node) = self.reg.nodes.get_mut(&r.endpoint.addr) {
            if let Some(seen) = &r.seen {
                node.seen = Some(seen.clone());
                node.seen_at = Some(Instant::now());
            }
            node.last = Some(r);
        }
    }

    fn on_sentinel(&mut self, r: SentinelReport) {
        match r {
            SentinelReport::View {
                sentinel,
                sent,
                view,
            } => {
                if let Some(v) = view.as_ref().ok().filter(|_| self.settings.learn_nodes) {
                    self.reg.learn(&v.host, v.port);
                    for (h, p) in &v.replicas {
                        self.reg.learn(h, *p);
                    }
                }
                if let Some(s) = self.reg.sentinels.get_mut(&sentinel.addr) {
                    s.last = Some((sent, view));
                }
            }
            SentinelReport::Event { name, announce, .. } => {
                if announce {
                    self.suspend(Suspension::Announced { event: name }, true);
                } else if name.starts_with("-failover-abort")
                    || name.starts_with("+failover-end")
                    || name == "+switch-master"
                {
                    if let Some(h) = self.hold.as_mut().filter(|h| h.announced) {
                        h.announced = false;
                        h.since = Instant::now();
                    }
                }
                self.reg.recheck_all();
            }
        }
    }

    fn on_signal(&mut self, s: Signal) {
        let current = self.handle.load();
        let in_use = |m: &Arc<NodeId>| current.master.as_ref().is_some_and(|c| c.node == *m);
        match s {
            Signal::Trouble {
                master,
                reason,
                demotion,
            } => {
                if demotion && in_use(&master) && current.state == RouteState::Verified {
                    let cause = Suspension::Refused {
                        master: master.endpoint.to_string(),
                        reply: reason,
                    };
                    self.suspend(cause, false);
                }
            }
            Signal::Hold { master, reason } => {
                if in_use(&master) {
                    self.suspend(reason, true);
                }
            }
            Signal::Reconfigure(sites, tls) => {
                tracing::info!(sites = sites.len(), "sites reconfigured");
                self.reg.reconfigure(sites, tls);
            }
            Signal::Release => {
                if let Some(h) = self.hold.as_mut().filter(|h| h.announced) {
                    h.announced = false;
                    h.since = Instant::now();
                }
            }
        }
        self.reg.recheck_all();
    }

    /// Suspends the master in use (HOLD) until it is verified again or replaced.
    fn suspend(&mut self, cause: Suspension, announced: bool) {
        let master = self
            .handle
            .load()
            .master
            .as_ref()
            .map(|m| Arc::clone(&m.node));
        match self.hold.as_mut() {
            Some(h) => {
                h.announced |= announced;
                h.since = Instant::now();
            }
            None => {
                self.hold = Some(Hold {
                    since: Instant::now(),
                    master,
                    cause,
                    announced,
                })
            }
        }
        self.reg.recheck_all();
    }
}

mod apply;
