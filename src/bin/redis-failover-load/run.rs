//! The composition of a run: it builds the shared pieces from the [`Settings`], starts the
//! workers, the progress line and (with --nodes) the MONITOR and role watchers, stops them in
//! order (workers first, then, after [`MONITOR_SETTLE`], the watchers), reads the keys back and
//! assembles the [`Report`]. It holds no logic of its own beyond that order.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_failover_proxy::tls::{Connector, TlsError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::authority::{self, Answers, Poll};
use crate::cli::{Settings, Stop};
use crate::ledger::{Ledger, WriteId};
use crate::monitor::{Seen, Watch};
use crate::net::Dialer;
use crate::report::{self, LedgerReport, MonitorStat, Report, SupersededReport};
use crate::stats::{Tally, Window};
use crate::superseded;
use crate::worker::{AckLog, Clock, Worker};
use crate::workload::Workload;
use crate::{progress, verify};

/// Time the MONITOR connections keep reading after the last reply, for lines still on the way.
const MONITOR_SETTLE: Duration = Duration::from_millis(300);
/// Time the watchers get to connect before the first command is sent.
const WATCH_LEAD: Duration = Duration::from_millis(300);

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A --nodes address does not resolve.
    #[error("--nodes: cannot resolve {addr}: {why}")]
    Resolve { addr: String, why: String },
}

/// The MONITOR and role watchers of a run.
#[derive(Debug)]
struct Watchers {
    monitors: Vec<JoinHandle<Seen>>,
    polls: Vec<JoinHandle<Answers>>,
    /// Resolved `ip:port` of each node, as Sentinels and MONITOR name them.
    resolved: Vec<String>,
    stop: CancellationToken,
}

/// Runs the load and returns the report.
pub(crate) async fn run(s: Settings) -> Result<Report, RunError> {
    let lead = if s.nodes.is_empty() {
        Duration::ZERO
    } else {
        WATCH_LEAD
    };
    let clock = Clock::starting_in(lead);
    let workload = Arc::new(Workload {
        run: fastrand::u32(..),
        prefix: s.key_prefix.clone(),
        keyspace: s.keyspace,
        value_size: s.value_size,
        read_share: s.read_share,
    });
    let tls = match &s.tls {
        Some(t) => Some(Arc::new(Connector::new(t)?)),
        None => None,
    };
    let dialer = Dialer::new(tls, s.credentials.clone());
    let ledger = (s.ledger && s.read_share < 1.0).then(|| Arc::new(Ledger::default()));
    let watchers = match s.nodes.is_empty() {
        true => None,
        false => Some(start_watchers(&s, &dialer, &workload, clock).await?),
    };

    let stop = CancellationToken::new();
    let windows: Vec<_> = (0..s.connections)
        .map(|_| Arc::new(Mutex::new(Window::default())))
        .collect();
    tokio::time::sleep_until(clock.start).await;
    let template = Worker {
        index: 0,
        addr: s.addr.clone(),
        depth: s.pipeline,
        reply_timeout: s.reply_timeout,
        period: s
            .rate
            .map(|r| Duration::from_secs_f64((s.pipeline * s.connections) as f64 / r)),
        budget: None,
        workload: Arc::clone(&workload),
        dialer: dialer.clone(),
        ledger: ledger.clone(),
        log_acks: watchers.is_some(),
        window: Arc::clone(&windows[0]),
        clock,
        stop: stop.clone(),
    };
    let workers = start_workers(&template, s.stop, &windows);
    let progress =
        (!s.quiet).then(|| tokio::spawn(progress::run(windows, clock.start, stop.child_token())));
    let timer = tokio::spawn(stop_when_due(s.stop, stop.clone()));

    let mut tally = Tally::default();
    let mut acks = Vec::new();
    for w in workers {
        let done = w.await.unwrap_or_default();
        tally.merge(&done.tally);
        acks.push(done.acks);
    }
    let elapsed = clock.start.elapsed();
    stop.cancel();
    timer.abort();
    if let Some(p) = progress {
        let _ = p.await;
    }

    let superseded = match watchers {
        Some(w) => Some(finish_watchers(w, &s, &clock, &acks).await),
        None => None,
    };
    let ledger_report = match &ledger {
        Some(l) => Some(check_ledger(&s, &dialer, &workload, l).await),
        None => None,
    };
    Ok(assemble(&s, &tally, elapsed, ledger_report, superseded))
}

/// One worker per window, each a copy of `template` with its own index, window and share of
/// the requests.
fn start_workers(
    template: &Worker,
    stop: Stop,
    windows: &[Arc<Mutex<Window>>],
) -> Vec<JoinHandle<crate::worker::Finished>> {
    let n = windows.len() as u64;
    windows
        .iter()
        .enumerate()
        .map(|(i, window)| {
            let w = Worker {
                index: i as u32,
                budget: match stop {
                    Stop::Requests(total) => Some(total / n + u64::from((i as u64) < total % n)),
                    Stop::After(_) => None,
                },
                window: Arc::clone(window),
                ..template.clone()
            };
            tokio::spawn(w.run())
        })
        .collect()
}

/// Cancels `stop` when the duration is over or on Ctrl-C.
async fn stop_when_due(when: Stop, stop: CancellationToken) {
    let due = async {
        match when {
            Stop::After(d) => tokio::time::sleep(d).await,
            Stop::Requests(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = due => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted: finishing the pipelines in flight"),
    }
    stop.cancel();
}

async fn start_watchers(
    s: &Settings,
    dialer: &Dialer,
    workload: &Arc<Workload>,
    clock: Clock,
) -> Result<Watchers, RunError> {
    let mut resolved = Vec::new();
    for addr in &s.nodes {
        let first = tokio::net::lookup_host(addr.as_str())
            .await
            .map_err(|e| RunError::Resolve {
                addr: addr.clone(),
                why: e.to_string(),
            })?
            .next()
            .ok_or_else(|| RunError::Resolve {
                addr: addr.clone(),
                why: "no address".into(),
            })?;
        resolved.push(first);
    }
    let node_addrs: HashSet<SocketAddr> = resolved.iter().copied().collect();
    let stop = CancellationToken::new();
    let monitors = s
        .nodes
        .iter()
        .enumerate()
        .map(|(node, addr)| {
            let w = Watch {
                node,
                addr: addr.clone(),
                node_addrs: node_addrs.clone(),
                dialer: dialer.clone(),
                workload: Arc::clone(workload),
                clock,
            };
            tokio::spawn(w.run(stop.clone()))
        })
        .collect();
    let mut polls: Vec<Poll> = match (&s.sentinels[..], &s.master_name) {
        ([], _) | (_, None) => s
            .nodes
            .iter()
            .enumerate()
            .map(|(i, a)| Poll::Node(i, a.clone()))
            .collect(),
        (list, Some(name)) => vec![Poll::Sentinel(list.to_vec(), name.clone())],
    };
    let sentinel_dialer = dialer.without_auth();
    let polls = polls
        .drain(..)
        .map(|p| {
            let d = match p {
                Poll::Sentinel(..) => sentinel_dialer.clone(),
                Poll::Node(..) => dialer.clone(),
            };
            tokio::spawn(p.run(d, clock, stop.clone()))
        })
        .collect();
    Ok(Watchers {
        monitors,
        polls,
        resolved: resolved.iter().map(SocketAddr::to_string).collect(),
        stop,
    })
}

async fn finish_watchers(
    w: Watchers,
    s: &Settings,
    clock: &Clock,
    acks: &[AckLog],
) -> SupersededReport {
    tokio::time::sleep(MONITOR_SETTLE).await;
    w.stop.cancel();
    let mut execs = Vec::new();
    let mut monitors = Vec::new();
    for (i, m) in w.monitors.into_iter().enumerate() {
        let seen = m.await.unwrap_or_default();
        monitors.push(MonitorStat {
            node: s.nodes[i].clone(),
            writes_seen: seen.execs.len() as u64,
            reconnects: seen.reconnects,
            blind_ms: seen.blind_ms,
        });
        execs.extend(seen.execs);
    }
    let mut node_answers = Vec::new();
    let mut sentinel_answers = Vec::new();
    for p in w.polls {
        match p.await {
            Ok(Answers::Node(a)) => node_answers.extend(a),
            Ok(Answers::Sentinel(a)) => sentinel_answers.extend(a),
            Err(_) => {}
        }
    }
    let by_sentinel = !s.sentinels.is_empty() && s.master_name.is_some();
    let namings = if by_sentinel {
        sentinel_answers.sort_by_key(|a| a.recv_us);
        authority::from_sentinel(&sentinel_answers, &w.resolved)
    } else {
        node_answers.sort_by_key(|a| a.recv_us);
        authority::from_nodes(&node_answers, &w.resolved)
    };
    let acked_ms = |id: WriteId| acks.get(id.conn as usize)?.acked_ms(id.seq);
    let intervals = superseded::intervals(&namings);
    SupersededReport {
        authority: if by_sentinel { "sentinel" } else { "nodes" },
        findings: superseded::find(&execs, &intervals, &s.nodes, &acked_ms),
        master_changes: superseded::master_changes(&namings, &execs, clock, &acked_ms),
        monitors,
    }
}

async fn check_ledger(
    s: &Settings,
    dialer: &Dialer,
    workload: &Workload,
    ledger: &Ledger,
) -> LedgerReport {
    let mut r = LedgerReport {
        writes: ledger.fates(),
        ..Default::default()
    };
    let addr = match (&s.verify_addr, &s.master_name) {
        (Some(a), _) => a.clone(),
        (None, Some(name)) if !s.sentinels.is_empty() => {
            match verify::master_from_sentinels(dialer, &s.sentinels, name).await {
                Ok(a) => a,
                Err(e) => {
                    r.error = Some(e.to_string());
                    return r;
                }
            }
        }
        _ => s.addr.clone(),
    };
    let keys = ledger.keys();
    let started = Instant::now();
    match tokio::time::timeout(
        verify::VERIFY_DEADLINE,
        verify::read_back(dialer, &addr, workload, &keys),
    )
    .await
    {
        Ok(Ok(found)) => r.check = Some(ledger.check(&found)),
        Ok(Err(e)) => r.error = Some(e.to_string()),
        Err(_) => {
            r.error = Some(format!(
                "read-back not finished after {:?}",
                started.elapsed()
            ))
        }
    }
    r.verified_at = Some(addr);
    r
}

fn assemble(
    s: &Settings,
    t: &Tally,
    elapsed: Duration,
    ledger: Option<LedgerReport>,
    superseded: Option<SupersededReport>,
) -> Report {
    let elapsed_s = elapsed.as_secs_f64();
    let (latency_us, histogram, ops_per_sec) = report::from_tally(t, elapsed_s);
    let mut r = Report {
        target: s.addr.clone(),
        connections: s.connections,
        pipeline: s.pipeline,
        rate: s.rate,
        read_share: s.read_share,
        elapsed_s,
        ops: t.reads_ok + t.writes_ok,
        ops_per_sec,
        reads_ok: t.reads_ok,
        writes_ok: t.writes_ok,
        latency_us,
        histogram,
        errors_total: t.error_count(),
        errors: t.errors.clone(),
        reconnects: t.reconnects,
        connect_failures: t.connect_failures,
        timeline_bucket_ms: report::bucket_ms(),
        timeline: t.timeline.clone(),
        ledger,
        superseded,
        exit_code: 0,
    };
    r.exit_code = report::exit_code(&r);
    r
}
