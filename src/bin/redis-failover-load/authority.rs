//! Who was master when: the harness asks every [`POLL_EVERY`] (100 ms), each answer under
//! [`POLL_TIMEOUT`], either the Sentinels (`SENTINEL get-master-addr-by-name`) or, without
//! Sentinels, every node (`INFO replication`), and turns the answers into a list of
//! [`Naming`]s: the moments the authority started naming another master.
//!
//! With Sentinels, the authority names whichever node the Sentinel answers. With nodes only,
//! it names the first node seen as master, and afterwards a node seen as master whose previous
//! replication history (`master_replid2`) is the current master's history (`master_replid`):
//! a replica promoted from it. A node that reports master with an unrelated history (an old
//! master restarted empty, for instance) is not named.
//!
//! Every answer was true at some instant between the moment the question was sent and the
//! moment the answer arrived, so each [`Naming`] carries two bounds: `certain_us`, the arrival
//! of the first answer naming the new master (the change had happened by then), and
//! `earliest_us`, the sending of the last answer that still named the previous one (it had
//! not happened before then).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::{Conn, Dialer};
use crate::worker::Clock;

/// Time between two questions to one node or Sentinel.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(100);
/// Deadline of one answer.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// What a node said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Master with this history and the one before it.
    Master { replid: String, replid2: String },
    /// Replica (or anything but master).
    Other,
}

/// One answer, times in µs since the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer<T> {
    /// When the question was sent.
    pub(crate) sent_us: i64,
    /// When the answer arrived.
    pub(crate) recv_us: i64,
    /// Who answered (node index; Sentinels: 0).
    pub(crate) from: usize,
    /// What it said.
    pub(crate) said: T,
}

/// A change of master, as the authority saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naming {
    /// The master named.
    pub(crate) addr: String,
    /// Its index in --nodes, if it is one of them.
    pub(crate) node: Option<usize>,
    /// Not before then (`i64::MIN` for the first naming).
    pub(crate) earliest_us: i64,
    /// Certainly by then.
    pub(crate) certain_us: i64,
}

/// The Sentinels' answers (`ip:port` of the master) as namings.
pub(crate) fn from_sentinel(answers: &[Answer<String>], nodes: &[String]) -> Vec<Naming> {
    let mut out: Vec<Naming> = Vec::new();
    let mut last_same_sent = i64::MIN;
    for a in answers {
        if out.last().is_some_and(|n| n.addr == a.said) {
            last_same_sent = a.sent_us;
            continue;
        }
        out.push(Naming {
            addr: a.said.clone(),
            node: nodes.iter().position(|n| *n == a.said),
            earliest_us: last_same_sent,
            certain_us: a.recv_us,
        });
        last_same_sent = a.sent_us;
    }
    out
}

/// The nodes' own answers as namings (see the module doc).
pub(crate) fn from_nodes(answers: &[Answer<NodeState>], nodes: &[String]) -> Vec<Naming> {
    let mut out: Vec<Naming> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut prev_sent = vec![i64::MIN; nodes.len()];
    for a in answers {
        if let NodeState::Master { replid, replid2 } = &a.said {
            let named = match &current {
                None => Some(i64::MIN),
                Some((n, _)) if *n == a.from => None,
                Some((_, history)) if replid2 == history => Some(prev_sent[a.from]),
                Some(_) => None,
            };
            if let Some(earliest_us) = named {
                out.push(Naming {
                    addr: nodes[a.from].clone(),
                    node: Some(a.from),
                    earliest_us,
                    certain_us: a.recv_us,
                });
            }
            if named.is_some() || current.as_ref().is_some_and(|(n, _)| *n == a.from) {
                current = Some((a.from, replid.clone()));
            }
        }
        prev_sent[a.from] = a.sent_us;
    }
    out
}

/// Parses an `INFO replication` text.
pub(crate) fn node_state(info: &str) -> NodeState {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    match field("role").as_deref() {
        Some("master") => NodeState::Master {
            replid: field("master_replid").unwrap_or_default(),
            replid2: field("master_replid2").unwrap_or_default(),
        },
        _ => NodeState::Other,
    }
}

/// Something to ask periodically.
#[derive(Debug, Clone)]
pub(crate) enum Poll {
    /// A node's INFO replication (index, address).
    Node(usize, String),
    /// The Sentinels, in order, about this master name.
    Sentinel(Vec<String>, String),
}

/// What a poller collected.
#[derive(Debug, Clone)]
pub(crate) enum Answers {
    /// From a node.
    Node(Vec<Answer<NodeState>>),
    /// From the Sentinels.
    Sentinel(Vec<Answer<String>>),
}

impl Poll {
    /// Asks every [`POLL_EVERY`] until `stop`.
    pub(crate) async fn run(
        self,
        dialer: Dialer,
        clock: Clock,
        stop: CancellationToken,
    ) -> Answers {
        let mut nodes = Vec::new();
        let mut sentinel = Vec::new();
        let mut conn: Option<Conn> = None;
        let mut target = 0usize;
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let addr = match &self {
                Poll::Node(_, a) => a.clone(),
                Poll::Sentinel(list, _) => list[target % list.len()].clone(),
            };
            let sent = Instant::now();
            let said = self.ask(&dialer, &mut conn, &addr).await;
            let at = |t: Instant| clock.us(t) as i64;
            match (said, &self) {
                (Some(Said::Node(s)), Poll::Node(i, _)) => nodes.push(Answer {
                    sent_us: at(sent),
                    recv_us: at(Instant::now()),
                    from: *i,
                    said: s,
                }),
                (Some(Said::Master(m)), Poll::Sentinel(..)) => sentinel.push(Answer {
                    sent_us: at(sent),
                    recv_us: at(Instant::now()),
                    from: 0,
                    said: m,
                }),
                _ => {
                    conn = None;
                    target += 1;
                }
            }
        }
        match self {
            Poll::Node(..) => Answers::Node(nodes),
            Poll::Sentinel(..) => Answers::Sentinel(sentinel),
        }
    }

    /// One question, on the kept connection or a new one; `None` on any failure.
    async fn ask(&self, dialer: &Dialer, conn: &mut Option<Conn>, addr: &str) -> Option<Said> {
        if conn.is_none() {
            *conn = Some(
                tokio::time::timeout(POLL_TIMEOUT, dialer.connect(addr))
                    .await
                    .ok()?
                    .ok()?,
            );
        }
        let c = conn.as_mut()?;
        match self {
            Poll::Node(..) => {
                let r = c.call(&["INFO", "replication"], POLL_TIMEOUT).await.ok()?;
                Some(Said::Node(node_state(&r.as_text()?)))
            }
            Poll::Sentinel(_, name) => {
                let r = c
                    .call(&["SENTINEL", "get-master-addr-by-name", name], POLL_TIMEOUT)
                    .await
                    .ok()?;
                let parts = r.as_array()?;
                let host = parts.first()?.as_text()?;
                let port = parts.get(1)?.as_text()?;
                Some(Said::Master(format!("{host}:{port}")))
            }
        }
    }
}

/// One decoded answer.
#[derive(Debug)]
enum Said {
    Node(NodeState),
    Master(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["a:1".into(), "b:2".into(), "c:3".into()]
    }

    fn master(id: &str, prev: &str) -> NodeState {
        NodeState::Master {
            replid: id.into(),
            replid2: prev.into(),
        }
    }

    fn ans<T>(t: i64, from: usize, said: T) -> Answer<T> {
        Answer {
            sent_us: t,
            recv_us: t + 1,
            from,
            said,
        }
    }

    #[test]
    fn sentinel_changes_with_bounds() {
        let a = vec![
            ans(100, 0, "a:1".to_string()),
            ans(200, 0, "a:1".to_string()),
            ans(300, 0, "b:2".to_string()),
            ans(400, 0, "b:2".to_string()),
            ans(500, 0, "x:9".to_string()),
        ];
        let n = from_sentinel(&a, &nodes());
        assert_eq!(n.len(), 3);
        assert_eq!(
            (n[0].node, n[0].earliest_us, n[0].certain_us),
            (Some(0), i64::MIN, 101)
        );
        assert_eq!(
            (n[1].node, n[1].earliest_us, n[1].certain_us),
            (Some(1), 200, 301)
        );
        assert_eq!((n[2].node, n[2].addr.as_str()), (None, "x:9"));
    }

    #[test]
    fn nodes_follow_promotions_and_ignore_unrelated_masters() {
        let a = vec![
            ans(100, 0, master("h1", "0")),
            ans(110, 1, NodeState::Other),
            ans(200, 0, master("h1", "0")),
            ans(210, 1, NodeState::Other),
            // b promoted from a's history; a still says master (not yet demoted).
            ans(300, 1, master("h2", "h1")),
            ans(310, 0, master("h1", "0")),
            // a restarted empty: a master with an unrelated history.
            ans(400, 0, master("h9", "0")),
            // c promoted from b's history.
            ans(500, 2, master("h3", "h2")),
        ];
        let n = from_nodes(&a, &nodes());
        let named: Vec<_> = n
            .iter()
            .map(|n| (n.node, n.earliest_us, n.certain_us))
            .collect();
        assert_eq!(
            named,
            vec![
                (Some(0), i64::MIN, 101),
                (Some(1), 210, 301),
                (Some(2), i64::MIN, 501)
            ]
        );
    }

    #[test]
    fn info_replication_fields() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:abc\r\nmaster_replid2:000\r\n";
        assert_eq!(node_state(info), master("abc", "000"));
        assert_eq!(
            node_state("role:slave\r\nmaster_host:x\r\n"),
            NodeState::Other
        );
    }
}
