//! CLIENT TRACKING through the proxy. Tracking state lives on a server connection, so the
//! client is pinned to a dedicated one. Client ids the client knows are the proxy's: a
//! `REDIRECT <id>` is translated to the server's id of that client's dedicated connection (it
//! must be on the same node), and GETREDIR / TRACKINGINFO are answered with the proxy's id.

use bytes::Bytes;

use super::batch::Single;
use super::route::Conn;
use super::Session;
use crate::resp::command::Kind;
use crate::resp::reply::{ClientError, Value};
use crate::resp::Request;

/// The tracking mode a client asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracking {
    /// Proxy id of the redirect target (None: in-band RESP3 pushes).
    pub redirect: Option<u64>,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    pub prefixes: Vec<Bytes>,
}

impl Tracking {
    fn parse(args: &[&[u8]]) -> Self {
        let mut t = Tracking::default();
        let mut i = 3;
        while i < args.len() {
            let a = args[i].to_ascii_uppercase();
            match a.as_slice() {
                b"BCAST" => t.bcast = true,
                b"OPTIN" => t.optin = true,
                b"OPTOUT" => t.optout = true,
                b"NOLOOP" => t.noloop = true,
                b"REDIRECT" | b"PREFIX" if i + 1 < args.len() => {
                    if a == b"PREFIX" {
                        t.prefixes.push(Bytes::copy_from_slice(args[i + 1]));
                    } else {
                        t.redirect = crate::resp::scan::parse_int(args[i + 1]).map(|v| v as u64);
                    }
                    i += 1;
                }
                _ => {}
            }
            i += 1;
        }
        t
    }
}

impl Session {
    pub(super) async fn tracking(&mut self, req: Request, silent: bool) {
        let args = req.args();
        let sub = args
            .get(1)
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match sub.as_slice() {
            b"TRACKING" => {}
            b"GETREDIR" => {
                let id = match &self.tracking {
                    Some(t) => t.redirect.map_or(0, |r| r as i64),
                    None => -1,
                };
                return self.reply_value(Value::Int(id), silent).await;
            }
            b"TRACKINGINFO" => {
                let info = self.tracking_info();
                return self.reply_value(info, silent).await;
            }
            // CACHING: on the connection the state is on.
            _ => return self.forward(req, Kind::Read, silent).await,
        }
        let on = args.get(2).is_some_and(|m| m.eq_ignore_ascii_case(b"ON"));
        if !on {
            self.tracking_off(req, silent).await;
            return;
        }
        if !self.pin_for(&req, silent).await {
            return;
        }
        let out = match self.redirect(&req) {
            Ok(r) => r,
            Err(e) => return self.reply_error(e, silent).await,
        };
        self.tracking = Some(Tracking::parse(&args));
        self.send_single(Single::command(&out, Kind::Tracking, 1, true), silent)
            .await;
    }

    async fn tracking_off(&mut self, req: Request, silent: bool) {
        let req = match self.without_redirect(&req) {
            Ok(r) => r,
            Err(e) => return self.reply_error(e, silent).await,
        };
        self.tracking = None;
        if let Conn::Pinned { dirty, .. } = &mut self.conn {
            *dirty = true;
        } else {
            // Not tracking: Redis answers OK all the same.
            return self.forward(req, Kind::Read, silent).await;
        }
        let route = self.route_data().await;
        if self.routed(route, &req, silent).await {
            self.send_single(Single::command(&req, Kind::Tracking, 1, true), silent)
                .await;
        }
    }

    /// `CLIENT TRACKING OFF` with its `REDIRECT <proxy client id>` checked as Redis checks it
    /// (the client must exist) and left out: turning tracking off redirects nothing, and the
    /// server knows the proxy's ids under other numbers.
    fn without_redirect(&self, req: &Request) -> Result<Request, ClientError> {
        let args = req.args();
        let Some((pos, id)) = redirect_arg(&args)? else {
            return Ok(req.clone());
        };
        let known = id == self.id() as i64
            || u64::try_from(id).is_ok_and(|id| self.ctx.registry.get(id).is_some());
        if !known {
            return Err(ClientError::NoSuchRedirect);
        }
        let kept: Vec<&[u8]> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pos && *i != pos + 1)
            .map(|(_, a)| *a)
            .collect();
        Ok(Request::from_args(&kept))
    }

    /// Rewrites `REDIRECT <proxy client id>` to the server's id of that client's dedicated
    /// connection, which must be on the same node.
    fn redirect(&self, req: &Request) -> Result<Request, ClientError> {
        let args = req.args();
        let Some((pos, id)) = redirect_arg(&args)? else {
            return Ok(req.clone());
        };
        // The client's own id: its connection was pinned just now, before its view in the
        // registry could show it.
        let target = if id == self.id() as i64 {
            self.conn.pinned_identity()
        } else {
            self.ctx
                .registry
                .get(id as u64)
                .and_then(|e| e.view().pinned)
        }
        .ok_or(ClientError::NoSuchRedirect)?;
        let ours = self.conn.pinned_identity().map(|(n, _)| n);
        if ours.as_ref() != Some(&target.0) {
            return Err(ClientError::NoSuchRedirect);
        }
        let server_id = target.1.to_string();
        let rewritten: Vec<&[u8]> = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == pos + 1 {
                    server_id.as_bytes()
                } else {
                    *a
                }
            })
            .collect();
        Ok(Request::from_args(&rewritten))
    }

    /// CLIENT TRACKINGINFO from the client's own tracking state.
    fn tracking_info(&self) -> Value {
        let (flags, redirect, prefixes) = match &self.tracking {
            None => (vec![Value::bulk("off")], -1, Vec::new()),
            Some(t) => {
                let mut flags = vec![Value::bulk("on")];
                for (set, name) in [
                    (t.bcast, "bcast"),
                    (t.optin, "optin"),
                    (t.optout, "optout"),
                    (t.noloop, "noloop"),
                ] {
                    if set {
                        flags.push(Value::bulk(name));
                    }
                }
                let alive = t
                    .redirect
                    .is_none_or(|id| self.ctx.registry.get(id).is_some());
                if !alive {
                    flags.push(Value::bulk("broken_redirect"));
                }
                let prefixes = t.prefixes.iter().cloned().map(Value::Bulk).collect();
                (flags, t.redirect.map_or(0, |r| r as i64), prefixes)
            }
        };
        Value::Map(vec![
            (Value::bulk("flags"), Value::Set(flags)),
            (Value::bulk("redirect"), Value::Int(redirect)),
            (Value::bulk("prefixes"), Value::Array(prefixes)),
        ])
    }
}

/// Where `REDIRECT <id>` is among `args` (the position of `REDIRECT`), and the id; `None`
/// without `REDIRECT`.
fn redirect_arg(args: &[&[u8]]) -> Result<Option<(usize, i64)>, ClientError> {
    let Some(pos) = args
        .iter()
        .position(|a| a.eq_ignore_ascii_case(b"REDIRECT"))
    else {
        return Ok(None);
    };
    let id = args
        .get(pos + 1)
        .and_then(|a| crate::resp::scan::parse_int(a))
        .ok_or(ClientError::NotInteger)?;
    Ok(Some((pos, id)))
}
