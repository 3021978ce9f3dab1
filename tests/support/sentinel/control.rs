//! Using a running [`Group`]: where each Sentinel is and what it says (queries, the master it
//! names, waiting for a majority to agree), forcing a failover, killing, pausing and restarting
//! single Sentinels, subscribing to their events, and their logs.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::super::client::{auth_reply, encode_strs, password, read_frame, Client, Frame};
use super::{fields, Group, Sentinel};

/// How long a query to one Sentinel may take (a paused one never answers).
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

impl Group {
    /// Master name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// Number of Sentinels.
    pub fn len(&self) -> usize {
        self.sentinels.len()
    }

    /// Whether the group is empty (never, but clippy wants the pair).
    pub fn is_empty(&self) -> bool {
        self.sentinels.is_empty()
    }

    /// How many Sentinels make a majority of the group.
    pub fn majority(&self) -> usize {
        self.sentinels.len() / 2 + 1
    }

    /// `127.0.0.1:port` (or where the test reaches a placed one) of every Sentinel (killed
    /// ones included), in index order.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.sentinels.len())
            .map(|i| self.addr(i).to_string())
            .collect()
    }

    /// Address of Sentinel `i` (where the test reaches it).
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.sentinels[i].reach, self.sentinels[i].port))
    }

    /// Runs one command on Sentinel `i` (authenticating when the group has a password),
    /// waiting at most one second for the reply.
    pub fn query(&self, i: usize, args: &[&str]) -> std::io::Result<Frame> {
        let mut stream = TcpStream::connect_timeout(&self.addr(i), QUERY_TIMEOUT)?;
        stream.set_read_timeout(Some(QUERY_TIMEOUT))?;
        stream.set_write_timeout(Some(QUERY_TIMEOUT))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        if let Some(pw) = &self.opts.requirepass {
            stream.write_all(&encode_strs(&password(pw).command()))?;
            auth_reply(read_frame(&mut reader)?)?;
        }
        stream.write_all(&encode_strs(args))?;
        read_frame(&mut reader)
    }

    /// `SENTINEL MASTER <name>` on Sentinel `i` as field → value.
    pub fn master_fields(&self, i: usize) -> Option<HashMap<String, String>> {
        if !self.sentinels[i].live() {
            return None;
        }
        let reply = self
            .query(i, &["SENTINEL", "MASTER", &self.opts.name])
            .ok()?;
        matches!(reply, Frame::Array(_)).then(|| fields(&reply))
    }

    /// The master Sentinel `i` names (`SENTINEL GET-MASTER-ADDR-BY-NAME`) as `ip:port`.
    pub fn master_addr_on(&self, i: usize) -> Option<String> {
        if !self.sentinels[i].live() {
            return None;
        }
        match self
            .query(i, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.opts.name])
            .ok()?
        {
            Frame::Array(a) if a.len() == 2 => Some(format!("{}:{}", a[0].text(), a[1].text())),
            _ => None,
        }
    }

    /// The master the first answering Sentinel (neither killed nor paused) names.
    pub fn master_addr(&self) -> Option<String> {
        (0..self.sentinels.len()).find_map(|i| self.master_addr_on(i))
    }

    /// Index of the first Sentinel neither killed nor paused (the one [`failover`](Self::failover)
    /// and [`subscribe`](Self::subscribe) use).
    pub fn first_live(&self) -> usize {
        self.sentinels
            .iter()
            .position(Sentinel::live)
            .expect("no live Sentinel in the group")
    }

    /// Forces a failover (`SENTINEL FAILOVER <name>`) on the first live Sentinel, retrying
    /// `INPROG` and `NOGOODSLAVE` for up to 15 s; returns the index of that Sentinel, which
    /// leads the failover (its events include `+try-failover`, `+selected-slave`, ...).
    pub fn failover(&self) -> usize {
        let i = self.first_live();
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let reply = self.query(i, &["SENTINEL", "FAILOVER", &self.opts.name]);
            match &reply {
                Ok(f) if *f == Frame::ok() => return i,
                Ok(Frame::Error(e))
                    if (e.contains("INPROG") || e.contains("NOGOODSLAVE"))
                        && Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => panic!(
                    "SENTINEL FAILOVER on sentinel {i}: {reply:?}\n{}",
                    self.logs()
                ),
            }
        }
    }

    /// Waits until a majority of the group (killed and paused Sentinels count as not
    /// agreeing) names `addr` (`ip:port`) as the master.
    pub fn wait_master(&self, addr: &str, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            let agree = (0..self.sentinels.len())
                .filter(|&i| self.master_addr_on(i).as_deref() == Some(addr))
                .count();
            if agree >= self.majority() {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills Sentinel `i` (SIGKILL). Its port then refuses connections.
    pub fn kill(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    /// Kills every Sentinel.
    pub fn kill_all(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
    }

    /// Starts Sentinel `i` again from its (rewritten) configuration file, on the same port,
    /// and waits until it answers PING. It remembers what it learned, like a real restart.
    pub fn restart(&mut self, i: usize) {
        self.sentinels[i].kill();
        self.sentinels[i].spawn();
        let until = Instant::now() + Duration::from_secs(10);
        while !matches!(self.query(i, &["PING"]), Ok(Frame::Simple(ref s)) if s == "PONG") {
            assert!(
                Instant::now() < until,
                "sentinel {i} did not restart: {}",
                self.sentinels[i].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Sentinel `i` with SIGSTOP: it keeps its sockets but answers nothing. A Sentinel
    /// paused for more than 2 s enters TILT mode for 30 s after [`resume`](Self::resume).
    pub fn pause(&self, i: usize) {
        self.sentinels[i].signal("STOP");
        self.sentinels[i].paused.store(true, Ordering::SeqCst);
    }

    /// Resumes Sentinel `i` after [`pause`](Self::pause).
    pub fn resume(&self, i: usize) {
        self.sentinels[i].signal("CONT");
        self.sentinels[i].paused.store(false, Ordering::SeqCst);
    }

    /// A client on the first live Sentinel subscribed to `+switch-master` (published by every
    /// Sentinel once it switches). Read it with [`next_event`] or [`wait_event`].
    pub fn subscribe(&self) -> Client {
        self.subscribe_on(self.first_live(), &["+switch-master"])
    }

    /// A client on Sentinel `i` subscribed (PSUBSCRIBE) to `patterns`, for example `["*"]`
    /// for every event. Returns once the subscriptions are confirmed.
    pub fn subscribe_on(&self, i: usize, patterns: &[&str]) -> Client {
        let mut c = Client::connect(self.addr(i));
        c.set_read_timeout(Some(Duration::from_secs(5)));
        if let Some(pw) = &self.opts.requirepass {
            c.auth(&password(pw))
                .unwrap_or_else(|e| panic!("AUTH on sentinel {i}: {e}"));
        }
        let mut args = vec!["PSUBSCRIBE"];
        args.extend_from_slice(patterns);
        c.send(&args);
        for p in patterns {
            let confirm = c.read();
            assert_eq!(confirm.items()[0], Frame::bulk("psubscribe"), "{confirm:?}");
            assert_eq!(confirm.items()[1], Frame::bulk(p), "{confirm:?}");
        }
        c
    }

    /// Log of Sentinel `i`.
    pub fn log(&self, i: usize) -> String {
        self.sentinels[i].log()
    }

    /// Every Sentinel's log, labelled (for failure messages).
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- sentinel {i} (port {}) ---\n{}", s.port, s.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
