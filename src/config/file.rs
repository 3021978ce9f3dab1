//! Reading each section of the configuration file into its typed settings, recording every
//! problem with its key path.

use super::reader::{Problems, Reader};
use super::*;

pub(super) fn read_limits(mut r: Reader<'_>, p: &mut Problems) -> Limits {
    let d = Limits::default();
    let l = Limits {
        max_clients: r.get_or("max_clients", d.max_clients, p),
        max_bulk_len: r.size("max_bulk_len", d.max_bulk_len, p),
        max_args: r.get_or("max_args", d.max_args, p),
        query_buffer: r.size("query_buffer", d.query_buffer, p),
        output_buffer: r.size("output_buffer", d.output_buffer, p),
        pubsub_output_buffer: r.size("pubsub_output_buffer", d.pubsub_output_buffer, p),
        max_in_flight: r.get_or("max_in_flight", d.max_in_flight, p),
        frame_timeout: r.duration("frame_timeout", d.frame_timeout, p),
        idle_timeout: r.duration("idle_timeout", d.idle_timeout, p),
    };
    r.finish(p);
    l
}

pub(super) fn read_secret(r: &mut Reader<'_>, key: &str, p: &mut Problems) -> Option<Secret> {
    let src: SecretSource = r.get(key, p)?;
    match src.load() {
        Ok(s) => Some(s),
        Err(e) => {
            p.add(&r.path_of(key), e);
            None
        }
    }
}

pub(super) fn read_backend(mut r: Reader<'_>, p: &mut Problems) -> Backend {
    let d = Backend::default();
    let b = Backend {
        pool_size: r.get_or("pool_size", d.pool_size, p),
        connect_timeout: r.duration("connect_timeout", d.connect_timeout, p),
        handshake_timeout: r.duration("handshake_timeout", d.handshake_timeout, p),
        reply_timeout: r.duration("reply_timeout", d.reply_timeout, p),
        max_dedicated: r.get_or("max_dedicated", d.max_dedicated, p),
        dedicated_idle: r.duration("dedicated_idle", d.dedicated_idle, p),
        user: r.get("user", p),
        password: read_secret(&mut r, "password", p),
        tls: r
            .table("tls", p)
            .and_then(|t| super::tls::read_node_tls(t, p)),
    };
    r.finish(p);
    b
}

pub(super) fn read_health(mut r: Reader<'_>, p: &mut Problems) -> Health {
    let d = Health::default();
    let h = Health {
        interval: r.duration("interval", d.interval, p),
        timeout: r.duration("timeout", d.timeout, p),
        rise: r.get_or("rise", d.rise, p),
        fall: r.get_or("fall", d.fall, p),
    };
    r.finish(p);
    h
}

pub(super) fn read_site(mut r: Reader<'_>, p: &mut Problems) -> Site {
    let d = Site::default();
    let s = Site {
        name: r.get_or("name", d.name, p),
        priority: r.get_or("priority", d.priority, p),
        nodes: r.get_or("nodes", Vec::new(), p),
        srv: r.get_or("srv", Vec::new(), p),
        sentinels: r.get_or("sentinels", Vec::new(), p),
        quorum: read_quorum(&mut r, p),
        tls: super::tls::read_site_tls(&mut r, p),
    };
    r.finish(p);
    s
}

fn read_quorum(r: &mut Reader<'_>, p: &mut Problems) -> Quorum {
    match r.get::<toml::Value>("quorum", p) {
        None => Quorum::Majority,
        Some(toml::Value::String(s)) if s == "majority" => Quorum::Majority,
        Some(toml::Value::Integer(n)) if n >= 1 => Quorum::Count(n as usize),
        Some(_) => {
            p.add(
                &r.path_of("quorum"),
                "expected \"majority\" or a number of nodes (at least 1)",
            );
            Quorum::Majority
        }
    }
}

pub(super) fn read_failover(mut r: Reader<'_>, p: &mut Problems) -> Failover {
    let d = Failover::default();
    let master_name: Option<String> = r.get("master_name", p);
    let authority = match r.get::<String>("authority", p).as_deref() {
        None | Some("nodes") => Authority::Nodes,
        Some("sentinel") => Authority::Sentinel {
            master_name: master_name.clone().unwrap_or_default(),
        },
        Some("active-active") => Authority::ActiveActive,
        Some(other) => {
            p.add(
                &r.path_of("authority"),
                format!("{other:?} is not \"nodes\", \"sentinel\" or \"active-active\""),
            );
            Authority::Nodes
        }
    };
    if master_name.is_some() && !matches!(authority, Authority::Sentinel { .. }) {
        p.add(
            &r.path_of("master_name"),
            "only used with authority = \"sentinel\"",
        );
    }
    let hold_timeout = r.opt_duration("hold_timeout", p);
    let stale_reads = match r.get::<String>("stale_reads", p).as_deref() {
        None | Some("refuse") => false,
        Some("serve") => true,
        Some(other) => {
            p.add(
                &r.path_of("stale_reads"),
                format!("{other:?} is not \"refuse\" or \"serve\""),
            );
            false
        }
    };
    let f = Failover {
        authority,
        stale_reads,
        hold_timeout: hold_timeout.unwrap_or(d.hold_timeout),
        hold_timeout_given: hold_timeout.is_some(),
        lease: r.opt_duration("lease", p),
        promotion_delay: r.opt_duration("promotion_delay", p),
        witnesses: r.get_or("witnesses", Vec::new(), p),
        max_held_clients: r.get_or("max_held_clients", d.max_held_clients, p),
        failback_after: r.duration("failback_after", d.failback_after, p),
        sentinel_user: r.get("sentinel_user", p),
        sentinel_password: read_secret(&mut r, "sentinel_password", p),
        learn_nodes: r.get_or("learn_nodes", d.learn_nodes, p),
    };
    r.finish(p);
    f
}

pub(super) fn read_dns(mut r: Reader<'_>, p: &mut Problems) -> Dns {
    let d = Dns::default();
    let dns = Dns {
        nameservers: r.get_or("nameservers", Vec::new(), p),
        min_ttl: r.duration("min_ttl", d.min_ttl, p),
        max_ttl: r.duration("max_ttl", d.max_ttl, p),
        retry: r.duration("retry", d.retry, p),
        timeout: r.duration("timeout", d.timeout, p),
    };
    r.finish(p);
    dns
}

pub(super) fn read_admin_auth(mut r: Reader<'_>, p: &mut Problems) -> Option<Secret> {
    let token = read_secret(&mut r, "token", p);
    r.finish(p);
    token
}

pub(super) fn read_shutdown(mut r: Reader<'_>, p: &mut Problems) -> Shutdown {
    let d = Shutdown::default();
    let s = Shutdown {
        drain_delay: r.duration("drain_delay", d.drain_delay, p),
        grace: r.duration("grace", d.grace, p),
    };
    r.finish(p);
    s
}

pub(super) fn read_log_format(r: &mut Reader<'_>, p: &mut Problems) -> LogFormat {
    match r.get::<String>("log_format", p).as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.add(
                "log_format",
                format!("{other:?} is not \"human\" or \"json\""),
            );
            LogFormat::Human
        }
    }
}
