//! The running parts' settings, derived from the configuration: what sessions read and a
//! reload replaces ([`Dynamic`]), client limits, backend pool settings, worker count, the
//! hold timeout and whether the write lease is enforced. One function per derived value, so
//! that start-up and reload derive them the same way.

use std::sync::Arc;

use super::users::build_users;
use super::StartError;
use crate::backend::{BackendAuth, Dialer, PoolConfig};
use crate::config::{Authority, Config};
use crate::resp::FrameLimits;
use crate::session::{Dynamic, Limits};

/// The hold timeout sessions use: the configured one, or (Sentinel, not configured) the one
/// the failover task derives from the Sentinels' own timing.
pub(super) fn hold_timeout(f: &crate::config::Failover) -> Option<std::time::Duration> {
    match f.authority {
        Authority::Sentinel { .. } if !f.hold_timeout_given => None,
        _ => Some(f.hold_timeout),
    }
}

/// Whether backend connections write only under a lease: with Sentinel, and with the `nodes`
/// authority once the orchestrator's promotion delay is known.
pub(super) fn lease_enforced(f: &crate::config::Failover) -> bool {
    match f.authority {
        Authority::Sentinel { .. } => true,
        Authority::Nodes => f.promotion_delay.is_some(),
        Authority::ActiveActive => false,
    }
}

pub(super) fn limits(cfg: &Config) -> Limits {
    Limits {
        frames: FrameLimits {
            max_bulk: cfg.limits.max_bulk_len,
            max_args: cfg.limits.max_args,
        },
        query_buffer: cfg.limits.query_buffer,
        output_buffer: cfg.limits.output_buffer,
        pubsub_output_buffer: cfg.limits.pubsub_output_buffer,
        max_in_flight: cfg.limits.max_in_flight,
    }
}

pub(super) fn dynamic(cfg: &Config, backend: &Arc<BackendAuth>) -> Result<Dynamic, StartError> {
    Ok(Dynamic {
        users: build_users(cfg, backend)?,
        allow: cfg.allow_commands.iter().cloned().collect(),
        hold_timeout: hold_timeout(&cfg.failover),
        max_held_clients: cfg.failover.max_held_clients,
        stale_reads: cfg.failover.stale_reads,
        frame_timeout: cfg.limits.frame_timeout,
        idle_timeout: cfg.limits.idle_timeout,
    })
}

/// Settings of backend connections.
pub(super) fn pool_config(cfg: &Config, own: &Arc<BackendAuth>) -> PoolConfig {
    PoolConfig {
        lanes: cfg.backend.pool_size,
        dialer: Dialer {
            connect_timeout: cfg.backend.connect_timeout,
            handshake_timeout: cfg.backend.handshake_timeout,
        },
        reply_timeout: cfg.backend.reply_timeout,
        max_dedicated: cfg.backend.max_dedicated,
        dedicated_idle: cfg.backend.dedicated_idle,
        verify: Some(Arc::clone(own)),
    }
}

/// Worker threads for `configured` (0: one per core).
pub(super) fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
