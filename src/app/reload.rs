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
        let kept = next.keep_restart_only(&self.cfg);
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
        self.pools.set_config(pool_config(&next, &self.backend));
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
