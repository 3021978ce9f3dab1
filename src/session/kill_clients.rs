//! `CLIENT KILL` and `CLIENT UNBLOCK`, acting on the proxy's own clients: the ids, addresses
//! and users a client sees in `CLIENT LIST` and `CLIENT ID` are the proxy's, so the filters
//! name those, never the server's connections (which carry many clients at once); an unblock
//! goes to the server for the server connection the named client is blocked on. Guarded like
//! in Redis's ACL `@admin` category: they run only where the operator allowed them
//! (`allow_commands`).

use std::net::SocketAddr;
use std::sync::Arc;

use super::registry::Entry;
use super::Session;
use crate::resp::reply::{ClientError, Value};
use crate::resp::scan::parse_int;
use crate::resp::Request;

/// What a `CLIENT KILL` selects.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    id: Option<u64>,
    addr: Option<SocketAddr>,
    laddr: Option<SocketAddr>,
    user: Option<String>,
    /// `Some(true)`: pub/sub clients; `Some(false)`: normal ones; `None`: any.
    pubsub: Option<bool>,
    /// `TYPE master|replica|slave`: the proxy has no such clients.
    nobody: bool,
    max_age: Option<u64>,
    skip_me: bool,
    /// The old form (`CLIENT KILL addr:port`): answers OK or an error, not a count.
    old_form: bool,
}

/// Parses the arguments after `CLIENT KILL`.
pub(super) fn parse(args: &[&[u8]]) -> Result<Filter, ClientError> {
    let text = |a: &[u8]| String::from_utf8_lossy(a).into_owned();
    if let [addr] = args {
        let addr = text(addr).parse().map_err(|_| ClientError::NoSuchClient)?;
        return Ok(Filter {
            addr: Some(addr),
            old_form: true,
            ..Filter::default()
        });
    }
    if args.is_empty() || args.len() % 2 != 0 {
        return Err(ClientError::Syntax);
    }
    let mut f = Filter {
        skip_me: true,
        ..Filter::default()
    };
    for pair in args.chunks(2) {
        let (name, value) = (text(pair[0]).to_ascii_lowercase(), pair[1]);
        match name.as_str() {
            "id" => {
                let id = parse_int(value).filter(|v| *v > 0);
                f.id = Some(id.ok_or(ClientError::BadClientId)? as u64);
            }
            "addr" => f.addr = Some(text(value).parse().map_err(|_| ClientError::Syntax)?),
            "laddr" => f.laddr = Some(text(value).parse().map_err(|_| ClientError::Syntax)?),
            "user" => f.user = Some(text(value)),
            "maxage" => {
                let age = parse_int(value).filter(|v| *v >= 0);
                f.max_age = Some(age.ok_or(ClientError::Syntax)? as u64);
            }
            "skipme" => {
                f.skip_me = match text(value).to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(ClientError::Syntax),
                }
            }
            "type" => match text(value).to_ascii_lowercase().as_str() {
                "normal" => f.pubsub = Some(false),
                "pubsub" => f.pubsub = Some(true),
                "master" | "replica" | "slave" => f.nobody = true,
                other => {
                    return Err(ClientError::UnknownClientType {
                        kind: other.to_string(),
                    })
                }
            },
            _ => return Err(ClientError::Syntax),
        }
    }
    Ok(f)
}

impl Filter {
    /// Whether `entry` is selected (`me`: the id of the client killing).
    pub(super) fn selects(&self, entry: &Entry, me: u64) -> bool {
        if self.nobody || (self.skip_me && entry.id == me) {
            return false;
        }
        let view = entry.view();
        let pubsub = view.sub + view.psub + view.ssub > 0;
        self.id.is_none_or(|id| id == entry.id)
            && self.addr.is_none_or(|a| a == entry.addr)
            && self.laddr.is_none_or(|a| a == entry.laddr)
            && self.user.as_ref().is_none_or(|u| *u == view.user)
            && self.pubsub.is_none_or(|p| p == pubsub)
            && self.max_age.is_none_or(|age| entry.age() > age)
    }
}

impl Session {
    /// CLIENT KILL, on the proxy's clients.
    pub(super) async fn client_kill(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        let filter = match parse(&args[2..]) {
            Ok(f) => f,
            Err(e) => return self.reply_error(e, silent).await,
        };
        let me = self.id();
        let chosen: Vec<Arc<Entry>> = self
            .ctx
            .registry
            .entries()
            .into_iter()
            .filter(|e| filter.selects(e, me))
            .collect();
        for e in &chosen {
            if e.id == me {
                // Like Redis: a client that kills itself gets its reply first.
                self.close();
            } else {
                e.kill();
            }
        }
        if filter.old_form {
            if chosen.is_empty() {
                return self.reply_error(ClientError::NoSuchClient, silent).await;
            }
            return self.reply(crate::resp::reply::OK, silent).await;
        }
        self.reply_value(Value::Int(chosen.len() as i64), silent)
            .await;
    }
}

impl Session {
    /// CLIENT UNBLOCK <proxy client id> [TIMEOUT|ERROR]: the server releases the connection
    /// that client is blocked on; 0 when it holds none.
    pub(super) async fn client_unblock(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        let Some(id) = args.get(2).and_then(|a| parse_int(a)) else {
            return self.reply_error(ClientError::NotInteger, silent).await;
        };
        let mode = match args.get(3).map(|m| m.to_ascii_uppercase()) {
            None => "TIMEOUT",
            Some(m) if m == b"TIMEOUT" => "TIMEOUT",
            Some(m) if m == b"ERROR" => "ERROR",
            Some(_) => return self.reply_error(ClientError::UnblockReason, silent).await,
        };
        if args.len() > 4 {
            return self.reply_error(ClientError::Syntax, silent).await;
        }
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| self.ctx.registry.get(id))
            .and_then(|e| e.view().dedicated);
        let (Some((node, server_id)), Some(user)) = (target, self.state.user.as_ref()) else {
            return self.reply_value(Value::Int(0), silent).await;
        };
        let key = crate::backend::PoolKey {
            node,
            db: 0,
            proto: self.state.proto,
            auth: Arc::clone(&user.backend),
            purpose: Default::default(),
        };
        let unblock = Request::from_args(&["CLIENT", "UNBLOCK", &server_id.to_string(), mode]);
        match crate::backend::once::send_once(self.ctx.pool.dialer(), &key, &unblock).await {
            Ok(reply) => self.reply(&reply, silent).await,
            Err(_) => self.reply_error(ClientError::NotSent, silent).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let old = parse(&[b"127.0.0.1:5000"]).unwrap();
        assert!(old.old_form && !old.skip_me);
        assert_eq!(parse(&[b"nonsense"]), Err(ClientError::NoSuchClient));
        let f = parse(&[b"ID", b"7", b"SKIPME", b"no", b"TYPE", b"pubsub"]).unwrap();
        assert_eq!((f.id, f.skip_me, f.pubsub), (Some(7), false, Some(true)));
        assert_eq!(parse(&[b"ID", b"0"]), Err(ClientError::BadClientId));
        // One argument is the old form, as in Redis: an address naming nobody.
        assert_eq!(parse(&[b"ID"]), Err(ClientError::NoSuchClient));
        assert_eq!(parse(&[b"ID", b"1", b"USER"]), Err(ClientError::Syntax));
        assert!(matches!(
            parse(&[b"TYPE", b"weird"]),
            Err(ClientError::UnknownClientType { .. })
        ));
        assert!(parse(&[b"TYPE", b"master"]).unwrap().nobody);
    }
}
