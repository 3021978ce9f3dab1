//! SIGHUP: applying a re-read configuration to the running proxy. A file that does not load
//! or validate is rejected whole before this runs. What can change in place does, from the
//! next use on: users and permissions, allowed commands, hold settings, client deadlines,
//! backend connection timeouts and pool size (for new connections), sites (nodes, Sentinels,
//! quorum, priority), TLS files on both sides. What would need re-binding or restarting a
//! task (addresses, threads, the authority, probing, DNS, backend credentials, buffer limits)
//! keeps its running value, and each such change is logged.

use std::sync::Arc;

use super::{dynamic, node_tls, pool_config, Running};
use crate::config::Config;
use crate::failover::Signal;

impl Running {
    /// Applies `next`; on error nothing was applied.
    pub fn reload(&mut self, mut next: Config) -> Result<(), String> {
        let kept = keep_restart_only(&self.cfg, &mut next);
        let dyn_next = dynamic(&next, &self.backend).map_err(|e| e.to_string())?;
        let tls_next = node_tls(&next, Some(&self.node_tls)).map_err(|e| e.to_string())?;
        if let (Some(acceptor), Some(t)) = (&self.acceptor, &next.tls) {
            if self.cfg.tls.as_ref() != Some(t) {
                acceptor.replace(t).map_err(|e| format!("tls: {e}"))?;
            }
        }
        for setting in kept {
            tracing::warn!(
                setting,
                "changed in the file, but needs a restart; keeping the running value"
            );
        }
        self.ctx.dynamic.store(Arc::new(dyn_next));
        self.pools.set_config(pool_config(&next));
        if next.sites != self.cfg.sites || next.backend.tls != self.cfg.backend.tls {
            self.node_tls = Arc::new(tls_next);
            self.signals.send(Signal::Reconfigure(
                next.sites.clone(),
                Arc::clone(&self.node_tls),
            ));
        }
        self.cfg = next;
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// Puts the running value back into `next` for every setting a reload cannot apply; returns
/// the names of those that differed.
fn keep_restart_only(old: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let mut keep = |name: &'static str, changed: bool| {
        if changed {
            kept.push(name);
        }
        changed
    };
    if keep("listen", old.listen != next.listen) {
        next.listen = old.listen;
    }
    let tls_shape = |c: &Config| c.tls.as_ref().map(|t| t.listen);
    if keep("tls (on/off, address)", tls_shape(old) != tls_shape(next)) {
        next.tls = old.tls.clone();
    }
    if keep("admin", old.admin != next.admin) {
        next.admin = old.admin;
    }
    if keep(
        "admin_auth",
        secret_changed(&old.admin_token, &next.admin_token),
    ) {
        next.admin_token = old.admin_token.clone();
    }
    if keep("threads", old.threads != next.threads) {
        next.threads = old.threads;
    }
    if keep("log_format", old.log_format != next.log_format) {
        next.log_format = old.log_format;
    }
    let limits = |c: &Config| {
        let mut l = c.limits.clone();
        l.frame_timeout = Default::default();
        l.idle_timeout = Default::default();
        format!("{l:?}")
    };
    if keep("limits (sizes, clients)", limits(old) != limits(next)) {
        let (frame, idle) = (next.limits.frame_timeout, next.limits.idle_timeout);
        next.limits = old.limits.clone();
        next.limits.frame_timeout = frame;
        next.limits.idle_timeout = idle;
    }
    let credentials = |c: &Config| {
        (
            c.backend.user.clone(),
            c.backend.password.as_ref().map(|p| p.expose().to_string()),
            c.backend.max_dedicated,
        )
    };
    if keep(
        "backend (credentials, max_dedicated)",
        credentials(old) != credentials(next),
    ) {
        next.backend.user = old.backend.user.clone();
        next.backend.password = old.backend.password.clone();
        next.backend.max_dedicated = old.backend.max_dedicated;
    }
    let failover = |c: &Config| {
        let mut f = c.failover.clone();
        f.hold_timeout = Default::default();
        f.hold_timeout_given = false;
        f.max_held_clients = 0;
        let pw = c
            .failover
            .sentinel_password
            .as_ref()
            .map(|p| p.expose().to_string());
        format!("{f:?}{pw:?}")
    };
    if keep(
        "failover (authority, Sentinel, failback)",
        failover(old) != failover(next),
    ) {
        let (hold, held) = (next.failover.hold_timeout, next.failover.max_held_clients);
        let given = next.failover.hold_timeout_given;
        next.failover = old.failover.clone();
        next.failover.hold_timeout = hold;
        next.failover.hold_timeout_given = given;
        next.failover.max_held_clients = held;
    }
    if keep(
        "health",
        format!("{:?}", old.health) != format!("{:?}", next.health),
    ) {
        next.health = old.health.clone();
    }
    if keep("dns", format!("{:?}", old.dns) != format!("{:?}", next.dns)) {
        next.dns = old.dns.clone();
    }
    kept
}

fn secret_changed(a: &Option<crate::config::Secret>, b: &Option<crate::config::Secret>) -> bool {
    a.as_ref().map(|s| s.expose()) != b.as_ref().map(|s| s.expose())
}
