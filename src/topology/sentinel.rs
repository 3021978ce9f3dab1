//! Listening to Sentinels. One task per Sentinel asks `SENTINEL MASTER <name>` and
//! `SENTINEL REPLICAS <name>` on every probe interval (or at once when asked), and a second
//! connection stays subscribed to Sentinel's events, so that a failover is known the moment
//! Sentinel announces it, before any replica is promoted. Everything is reported to the
//! failover task, which alone decides what a majority says.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::backend::conn::BoxIo;
use crate::backend::handshake::read_reply;
use crate::backend::{ConnError, Dialer, Endpoint};
use crate::config::Secret;
use crate::resp::decode::Reply;
use crate::resp::reply::Proto;
use crate::resp::Request;

/// Events that announce a failover before Sentinel promotes anyone: writes are held from here.
const ANNOUNCE: [&str; 6] = [
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
];
/// Events after which the master may be a different one: check at once.
const RECHECK: [&str; 13] = [
    "+switch-master",
    "+promoted-slave",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+odown",
    "-odown",
    "+config-update-from",
    "+new-epoch",
    "+convert-to-slave",
    "+tilt",
];

/// How to reach the Sentinels.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// Monitored master name.
    pub master_name: String,
    /// Optional ACL user.
    pub user: Option<String>,
    /// Optional password.
    pub password: Option<Secret>,
    /// Time between queries.
    pub interval: Duration,
    /// Deadline of one query round.
    pub timeout: Duration,
    /// Time between queries while a write lease is in force (set by the failover task once
    /// it knows the lease length, in milliseconds; 0: `interval`).
    pub lease_pace: Arc<std::sync::atomic::AtomicU64>,
}

impl SentinelSettings {
    /// Time until the next query: the interval, or less while a lease must be renewed.
    fn pace(&self) -> Duration {
        match self.lease_pace.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.interval,
            ms => self.interval.min(Duration::from_millis(ms)),
        }
    }
}

/// What one Sentinel says about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// Master address as Sentinel knows it (an IP, or a name with `announce-hostnames`).
    pub host: String,
    /// Master port.
    pub port: u16,
    /// Master run_id as Sentinel last saw it (may be empty).
    pub run_id: String,
    /// Configuration epoch of this master.
    pub epoch: u64,
    /// Sentinel's flags for the master (`master`, `s_down`, `o_down`, `failover_in_progress`).
    pub flags: String,
    /// Replicas Sentinel knows, `(host, port)`.
    pub replicas: Vec<(String, u16)>,
    /// Sentinel's `down-after-milliseconds` for this master.
    pub down_after: Option<Duration>,
    /// Sentinel's `failover-timeout` for this master.
    pub failover_timeout: Option<Duration>,
    /// Sentinels that must agree the master is down before a failover (`quorum`).
    pub quorum: Option<usize>,
    /// How long Sentinel has been counting towards declaring the master down when it
    /// answered: the age of its oldest unanswered ping (`last-ping-sent`), or, while its link
    /// is down, the time since the master last answered (`last-ok-ping-reply`).
    pub down_count: Duration,
}

impl MasterView {
    /// Whether Sentinel considers the master down or in the middle of a failover. Not
    /// `disconnected`: right after a switch every Sentinel reports the new master so until its
    /// next reconnect (up to a second), which says nothing about the master; a master Sentinel
    /// really cannot reach turns `s_down` after `down-after-milliseconds`.
    pub fn troubled(&self) -> bool {
        self.flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "failover_in_progress"))
    }

    /// The master's address as Sentinel names it (`host:port`).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A report to the failover task.
#[derive(Debug, Clone)]
pub enum Report {
    /// A query round's outcome.
    View {
        /// The Sentinel.
        sentinel: Endpoint,
        /// When the query was sent (a confirmation is worth from then, not from its arrival).
        sent: std::time::Instant,
        /// Its view, or why it could not be had.
        view: Result<MasterView, String>,
    },
    /// An event about the monitored master.
    Event {
        /// The Sentinel that published it.
        sentinel: Endpoint,
        /// Event name (`+switch-master`, ...).
        name: String,
        /// Whether it announces a failover (hold writes now).
        announce: bool,
    },
}

/// A running Sentinel watcher (stops when dropped).
#[derive(Debug)]
pub struct Watcher {
    recheck: Arc<Notify>,
    stop: CancellationToken,
}

impl Watcher {
    /// Starts querying `sentinel` and listening to its events.
    pub fn spawn(
        sentinel: Endpoint,
        dialer: Dialer,
        settings: SentinelSettings,
        tx: mpsc::Sender<Report>,
    ) -> Self {
        let recheck = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(query_loop(
            sentinel.clone(),
            dialer,
            settings.clone(),
            tx.clone(),
            Arc::clone(&recheck),
            stop.clone(),
        ));
        tokio::spawn(event_loop(
            sentinel,
            dialer,
            settings,
            tx,
            Arc::clone(&recheck),
            stop.clone(),
        ));
        Self { recheck, stop }
    }

    /// Queries now.
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Opens a connection to a Sentinel and authenticates.
async fn connect(
    sentinel: &Endpoint,
    dialer: Dialer,
    settings: &SentinelSettings,
) -> Result<(BoxIo, BytesMut), String> {
    let mut io = dialer.connect(sentinel).await.map_err(|e| e.to_string())?;
    let mut rbuf = BytesMut::with_capacity(4096);
    if let Some(pw) = &settings.password {
        let auth = match &settings.user {
            Some(u) => Request::from_args(&["AUTH", u, pw.expose()]),
            None => Request::from_args(&["AUTH", pw.expose()]),
        };
        io.write_all(auth.bytes())
            .await
            .map_err(|e| e.to_string())?;
        let r = read_reply(&mut io, &mut rbuf, Proto::Resp2)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(e) = r.as_error() {
            return Err(format!("authentication refused: {e}"));
        }
    }
    Ok((io, rbuf))
}

async fn query_loop(
    sentinel: Endpoint,
    dialer: Dialer,
    settings: SentinelSettings,
    tx: mpsc::Sender<Report>,
    recheck: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut conn: Option<(BoxIo, BytesMut)> = None;
    loop {
        let sent = std::time::Instant::now();
        let round = timeout(
            settings.timeout,
            query(&mut conn, &sentinel, dialer, &settings),
        )
        .await;
        let view = match round {
            Ok(v) => v,
            Err(_) => Err(format!("no answer within {:?}", settings.timeout)),
        };
        if view.is_err() {
            conn = None;
        }
        let report = Report::View {
            sentinel: sentinel.clone(),
            sent,
            view,
        };
        if tx.send(report).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.pace()) => {}
            _ = recheck.notified() => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn query(
    conn: &mut Option<(BoxIo, BytesMut)>,
    sentinel: &Endpoint,
    dialer: Dialer,
    settings: &SentinelSettings,
) -> Result<MasterView, String> {
    if conn.is_none() {
        *conn = Some(connect(sentinel, dialer, settings).await?);
    }
    let Some((io, rbuf)) = conn.as_mut() else {
        return Err("not connected".into());
    };
    let mut out = BytesMut::new();
    out.extend_from_slice(
        Request::from_args(&["SENTINEL", "MASTER", &settings.master_name]).bytes(),
    );
    out.extend_from_slice(
        Request::from_args(&["SENTINEL", "REPLICAS", &settings.master_name]).bytes(),
    );
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    let master = read_reply(io, rbuf, Proto::Resp2)
        .await
        .map_err(|e| e.to_string())?;
    let replicas = read_reply(io, rbuf, Proto::Resp2)
        .await
        .map_err(|e| e.to_string())?;
    parse_view(&master, &replicas)
}

/// Builds a view from `SENTINEL MASTER` and `SENTINEL REPLICAS` replies.
pub fn parse_view(master: &Reply, replicas: &Reply) -> Result<MasterView, String> {
    if let Some(e) = master.as_error() {
        return Err(e.to_string());
    }
    let text = |r: &Reply, k: &str| r.field(k).and_then(Reply::as_text).unwrap_or_default();
    let num = |r: &Reply, k: &str| r.field(k).and_then(Reply::as_int);
    let millis = |k: &str| {
        num(master, k)
            .filter(|v| *v > 0)
            .map(|v| Duration::from_millis(v as u64))
    };
    let disconnected = text(master, "flags")
        .split(',')
        .any(|f| f == "disconnected");
    let pending = millis("last-ping-sent").unwrap_or_default();
    let down_count = if disconnected {
        pending.max(millis("last-ok-ping-reply").unwrap_or_default())
    } else {
        pending
    };
    let port = num(master, "port")
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("SENTINEL MASTER without port")?;
    let replicas = replicas
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter(|r| !text(r, "flags").contains("s_down"))
        .filter_map(|r| Some((text(r, "ip"), u16::try_from(num(r, "port")?).ok()?)))
        .collect();
    Ok(MasterView {
        host: text(master, "ip"),
        port,
        run_id: text(master, "runid"),
        epoch: num(master, "config-epoch").unwrap_or(0).max(0) as u64,
        flags: text(master, "flags"),
        replicas,
        down_after: millis("down-after-milliseconds"),
        failover_timeout: millis("failover-timeout"),
        quorum: num(master, "quorum").filter(|q| *q > 0).map(|q| q as usize),
        down_count,
    })
}

/// Parses an event payload; returns whether it concerns `master`.
pub fn concerns(payload: &str, master: &str) -> bool {
    let words: Vec<&str> = payload.split_whitespace().collect();
    // `<type> <name> <ip> <port> @ <master-name> <ip> <port>` or, for a master instance and
    // for +switch-master, the master name in second or first place.
    match words.iter().position(|w| *w == "@") {
        Some(at) => words.get(at + 1) == Some(&master),
        None => words.first() == Some(&master) || words.get(1) == Some(&master),
    }
}

async fn event_loop(
    sentinel: Endpoint,
    dialer: Dialer,
    settings: SentinelSettings,
    tx: mpsc::Sender<Report>,
    recheck: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let run = listen(&sentinel, dialer, &settings, &tx, &recheck);
        tokio::select! {
            r = run => if let Err(e) = r {
                tracing::debug!(sentinel = %sentinel, error = %e, "sentinel event connection ended");
            },
            _ = stop.cancelled() => return,
        }
        if tx.is_closed() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn listen(
    sentinel: &Endpoint,
    dialer: Dialer,
    settings: &SentinelSettings,
    tx: &mpsc::Sender<Report>,
    recheck: &Notify,
) -> Result<(), String> {
    let (mut io, mut rbuf) = timeout(settings.timeout, connect(sentinel, dialer, settings))
        .await
        .map_err(|_| "connect timed out".to_string())??;
    let mut channels = vec!["SUBSCRIBE"];
    channels.extend(ANNOUNCE);
    channels.extend(RECHECK);
    io.write_all(Request::from_args(&channels).bytes())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let msg = read_reply(&mut io, &mut rbuf, Proto::Resp2)
            .await
            .map_err(|e: ConnError| e.to_string())?;
        let Some(items) = msg.as_array() else {
            continue;
        };
        let (Some(kind), Some(name), Some(payload)) = (
            items.first().and_then(Reply::as_text),
            items.get(1).and_then(Reply::as_text),
            items.get(2).and_then(Reply::as_text),
        ) else {
            continue;
        };
        if kind != "message" || !concerns(&payload, &settings.master_name) {
            continue;
        }
        let announce = ANNOUNCE.contains(&name.as_str());
        tracing::info!(sentinel = %sentinel, event = %name, detail = %payload, "sentinel event");
        recheck.notify_one();
        let report = Report::Event {
            sentinel: sentinel.clone(),
            name,
            announce,
        };
        if tx.send(report).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> Reply {
        Reply::Str(Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn parses_master_and_replicas() {
        let master = Reply::Array(vec![
            s("name"),
            s("mymaster"),
            s("ip"),
            s("10.0.0.1"),
            s("port"),
            s("6379"),
            s("runid"),
            s("abc"),
            s("flags"),
            s("master"),
            s("config-epoch"),
            s("7"),
        ]);
        let replicas = Reply::Array(vec![
            Reply::Array(vec![
                s("ip"),
                s("10.0.0.2"),
                s("port"),
                s("6379"),
                s("flags"),
                s("slave"),
            ]),
            Reply::Array(vec![
                s("ip"),
                s("10.0.0.3"),
                s("port"),
                s("6379"),
                s("flags"),
                s("s_down,slave"),
            ]),
        ]);
        let v = parse_view(&master, &replicas).unwrap();
        assert_eq!((v.host.as_str(), v.port, v.epoch), ("10.0.0.1", 6379, 7));
        assert_eq!(
            (v.down_after, v.quorum, v.down_count),
            (None, None, Duration::ZERO)
        );
        assert_eq!(v.replicas, vec![("10.0.0.2".to_string(), 6379)]);
        assert!(!v.troubled());
        assert!(parse_view(
            &Reply::Error("ERR No such master with that name".into()),
            &Reply::Null
        )
        .is_err());
    }

    #[test]
    fn events_are_matched_to_the_master() {
        assert!(concerns("master mymaster 127.0.0.1 6379", "mymaster"));
        assert!(concerns(
            "mymaster 127.0.0.1 6379 127.0.0.1 6380",
            "mymaster"
        ));
        assert!(concerns(
            "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
            "mymaster"
        ));
        assert!(!concerns(
            "slave 127.0.0.1:6380 127.0.0.1 6380 @ other 127.0.0.1 6379",
            "mymaster"
        ));
    }
}
