//! Routing in nginx: targets resolved when the config loads, the route and target chosen in
//! the access phase, and `ai_gateway_upstream`, the peer selection of an `upstream {}` block
//! that connects to whichever target the request was routed to (so one block, with nginx's
//! `keepalive`, serves every provider and pools their connections).

use std::borrow::Cow;
use std::ffi::{c_char, c_void};
use std::net::SocketAddr;

use ngx::core::NGX_CONF_ERROR;

use ngx::ffi::{
    ngx_array_push, ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_http_upstream_module,
    ngx_http_upstream_server_t, ngx_http_upstream_srv_conf_t, ngx_int_t, ngx_peer_connection_t,
    ngx_pnalloc, ngx_uint_t, sockaddr, NGX_BUSY, NGX_ERROR, NGX_OK,
};

use ngx::http::HttpModuleMainConf;

use super::ctx;
use super::guard::guard;
use super::headers::request_header;
use super::limit_zone::{now_ms, LimitZone};
use super::module::Module;
use super::snapshot::with_routing;
use crate::core::config::GatewayConfig;
use crate::core::pipeline::{record_attempt, Env};
use crate::core::policy::Table;
use crate::core::routing::{upstream_uri, Provider, Route};
use crate::core::short_text::decimal;

/// The pipeline's environment in a worker: the clock, the limit zone (counters and targets'
/// health), the worker's routing rotation.
pub struct NgxEnv {
    pub zone: Option<LimitZone>,
}

impl Env for NgxEnv {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn with_table<T>(&mut self, f: impl FnOnce(&mut Table) -> T) -> Option<T> {
        self.zone?.with_table(f)
    }

    fn next_turn(&mut self, route: &Route, index: usize) -> u64 {
        with_routing(|w| w.next_turn(route, index))
    }
}

/// The limit zone, where targets' health is kept (none: no passive health).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn health_zone(r: *mut ngx_http_request_t) -> Option<LimitZone> {
    // SAFETY: r is live; the zone belongs to this cycle and was initialised at start.
    unsafe {
        Module::main_conf(&*r)
            .and_then(|m| m.limit_zone)
            .and_then(|z| LimitZone::open(z))
    }
}

/// Records an attempt's outcome in the target's health; a failure that starts a cool-down is
/// logged.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn record_outcome(
    r: *mut ngx_http_request_t,
    config: &GatewayConfig,
    target: usize,
    failed: bool,
    retry_after_s: Option<u64>,
) {
    // SAFETY: r is live (caller).
    let zone = unsafe { health_zone(r) };
    if zone.is_none() {
        return;
    }
    let cooled = record_attempt(config, &mut NgxEnv { zone }, target, failed, retry_after_s);
    let Some(t) = config.routing.targets.get(target) else {
        return;
    };
    if let Some(ms) = cooled {
        // SAFETY: r is live (caller).
        let log = unsafe { (*(*r).connection).log };
        ngx::ngx_log_error!(
            ngx::ffi::NGX_LOG_WARN,
            log,
            "ai_gateway: target \"{}\" cools down for {} s",
            t.name,
            ms.div_ceil(1000)
        );
    }
}

/// `ai_gateway_upstream;` in an `upstream {}` block: the block's peer is the routed target.
pub unsafe extern "C" fn cmd_upstream(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: called by nginx inside an upstream block; its srv conf is the upstream module's.
    unsafe {
        let log = (*cf).log;
        guard(log, NGX_CONF_ERROR as *mut c_char, || {
            let ctx = (*cf).ctx as *mut ngx::ffi::ngx_http_conf_ctx_t;
            let uscf = *(*ctx).srv_conf.add(ngx_http_upstream_module.ctx_index)
                as *mut ngx_http_upstream_srv_conf_t;
            if uscf.is_null() {
                return NGX_CONF_ERROR as *mut c_char;
            }
            if (*uscf).peer.init_upstream.is_some() {
                return c"load balancing method redefined".as_ptr().cast_mut();
            }
            (*uscf).peer.init_upstream = Some(init_upstream);
            // nginx refuses an upstream block without servers: the targets are the servers,
            // so one placeholder entry (never used by this peer selection) satisfies it
            if !(*uscf).servers.is_null() {
                let s = ngx_array_push((*uscf).servers) as *mut ngx_http_upstream_server_t;
                if s.is_null() {
                    return NGX_CONF_ERROR as *mut c_char;
                }
                std::ptr::write_bytes(s, 0, 1);
            }
            std::ptr::null_mut()
        })
    }
}

unsafe extern "C" fn init_upstream(
    _cf: *mut ngx_conf_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    // SAFETY: nginx passes the upstream block's conf at init_main_conf time.
    unsafe {
        (*us).peer.init = Some(init_peer);
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn init_peer(
    r: *mut ngx_http_request_t,
    _us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request whose upstream is being set up.
    unsafe {
        let u = (*r).upstream;
        if u.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        (*u).peer.get = Some(get_peer);
        (*u).peer.free = Some(free_peer);
        // nginx calls these for TLS upstreams (proxy_ssl_session_reuse, on by default):
        // sessions are not cached per target; pooled connections avoid most handshakes
        (*u).peer.set_session = Some(set_session);
        (*u).peer.save_session = Some(save_session);
        (*u).peer.data = r.cast();
        // one try per dispatch: failover to another provider re-dispatches the request
        (*u).peer.tries = 1;
        if !target_timeouts(r) {
            return NGX_ERROR as ngx_int_t;
        }
    }
    NGX_OK as ngx_int_t
}

/// Gives this attempt the target's own timeouts: a copy of the location's upstream settings
/// in the request pool (false when memory runs out).
///
/// # Safety
/// `r` must be a live request whose upstream is being set up.
unsafe fn target_timeouts(r: *mut ngx_http_request_t) -> bool {
    // SAFETY: u->conf points at the location's settings, which outlive the request; the copy
    // lives in the request pool.
    unsafe {
        let Some(c) = ctx::get((*r).main) else {
            return true;
        };
        let (Some(state), Some(config)) = (c.route.as_ref(), c.config()) else {
            return true;
        };
        let Some(t) = state.target().and_then(|i| config.routing.targets.get(i)) else {
            return true;
        };
        if t.connect_timeout_ms.is_none()
            && t.send_timeout_ms.is_none()
            && t.read_timeout_ms.is_none()
        {
            return true;
        }
        let u = (*r).upstream;
        let copy = ngx::ffi::ngx_palloc(
            (*r).pool,
            std::mem::size_of::<ngx::ffi::ngx_http_upstream_conf_t>(),
        ) as *mut ngx::ffi::ngx_http_upstream_conf_t;
        if copy.is_null() {
            return false;
        }
        std::ptr::copy_nonoverlapping((*u).conf, copy, 1);
        if let Some(ms) = t.connect_timeout_ms {
            (*copy).connect_timeout = ms as _;
        }
        if let Some(ms) = t.send_timeout_ms {
            (*copy).send_timeout = ms as _;
        }
        if let Some(ms) = t.read_timeout_ms {
            (*copy).read_timeout = ms as _;
        }
        (*u).conf = copy;
        true
    }
}

unsafe extern "C" fn get_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    let r = data as *mut ngx_http_request_t;
    // SAFETY: data is the request init_peer stored; pc is its peer connection.
    let log = unsafe { (*pc).log };
    guard(log, NGX_BUSY as ngx_int_t, || unsafe { get(pc, r) })
}

unsafe fn get(pc: *mut ngx_peer_connection_t, r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live (the upstream belongs to it); memory for the address comes from its
    // pool, which outlives the connection attempt.
    unsafe {
        let main = (*r).main;
        let Some(c) = ctx::get(main) else {
            return NGX_BUSY as ngx_int_t;
        };
        let Some(state) = c.route.as_ref() else {
            return NGX_BUSY as ngx_int_t;
        };
        let Some(snapshot) = c.snapshot.as_ref() else {
            return NGX_BUSY as ngx_int_t;
        };
        let Some(index) = state.target() else {
            return NGX_BUSY as ngx_int_t;
        };
        let (Some(t), Some(target)) = (
            snapshot.targets.get(index),
            snapshot.config.routing.targets.get(index),
        ) else {
            return NGX_BUSY as ngx_int_t;
        };
        let Some(addr) = t.addrs.first() else {
            return NGX_BUSY as ngx_int_t;
        };
        if !with_routing(|w| w.hold(target)) {
            ngx::ngx_log_error!(
                ngx::ffi::NGX_LOG_WARN,
                (*pc).log,
                "ai_gateway: target \"{}\" has {} requests in flight (max_connections)",
                target.name,
                target.max_connections.unwrap_or(0)
            );
            return NGX_BUSY as ngx_int_t;
        }
        let pool = (*r).pool;
        let sa = socket2_like(addr);
        let mem = ngx::ffi::ngx_palloc(pool, sa.len()) as *mut u8;
        let name = addr.to_string();
        let name_mem = ngx_pnalloc(pool, name.len()) as *mut u8;
        if mem.is_null() || name_mem.is_null() {
            with_routing(|w| w.release(&target.name));
            return NGX_ERROR as ngx_int_t;
        }
        std::ptr::copy_nonoverlapping(sa.as_ptr(), mem, sa.len());
        std::ptr::copy_nonoverlapping(name.as_ptr(), name_mem, name.len());
        let name_str = ngx::ffi::ngx_palloc(pool, std::mem::size_of::<ngx::ffi::ngx_str_t>())
            as *mut ngx::ffi::ngx_str_t;
        if name_str.is_null() {
            with_routing(|w| w.release(&target.name));
            return NGX_ERROR as ngx_int_t;
        }
        name_str.write(ngx::ffi::ngx_str_t {
            len: name.len(),
            data: name_mem,
        });
        (*pc).sockaddr = mem as *mut sockaddr;
        (*pc).socklen = sa.len() as _;
        (*pc).name = name_str;
        if let Some(state) = ctx::get(main).and_then(|c| c.route.as_mut()) {
            state.holding = Some(index);
        }
        NGX_OK as ngx_int_t
    }
}

/// Releases the routed peer (the attempt's place in `max_connections`); the connection is
/// closed unless `keepalive` (which wraps this) keeps it.
pub(super) unsafe extern "C" fn free_peer(
    pc: *mut ngx_peer_connection_t,
    data: *mut c_void,
    _state: ngx_uint_t,
) {
    let r = data as *mut ngx_http_request_t;
    // SAFETY: nginx passes the peer connection being released and the request of init_peer.
    let log = unsafe { (*pc).log };
    guard(log, (), || unsafe {
        (*pc).tries = 0;
        let Some(c) = ctx::get((*r).main) else {
            return;
        };
        // the attempt's place in its target's max_connections count
        let Some(index) = c.route.as_mut().and_then(|s| s.holding.take()) else {
            return;
        };
        if let Some(t) = c.config().and_then(|cfg| cfg.routing.targets.get(index)) {
            with_routing(|w| w.release(&t.name));
        }
    });
}

unsafe extern "C" fn set_session(_pc: *mut ngx_peer_connection_t, _data: *mut c_void) -> ngx_int_t {
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn save_session(_pc: *mut ngx_peer_connection_t, _data: *mut c_void) {}

/// The bytes of a `sockaddr_in` / `sockaddr_in6` for `addr`.
fn socket2_like(addr: &SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(v4) => {
            let sa = libc_sockaddr_in(v4);
            sa.to_vec()
        }
        SocketAddr::V6(v6) => libc_sockaddr_in6(v6).to_vec(),
    }
}

/// Address families (Linux values).
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `struct sockaddr_in` (Linux layout): family, port (network order), address, zero pad.
fn libc_sockaddr_in(a: &std::net::SocketAddrV4) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&AF_INET.to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.ip().octets());
    b
}

/// `struct sockaddr_in6` (Linux layout).
fn libc_sockaddr_in6(a: &std::net::SocketAddrV6) -> [u8; 28] {
    let mut b = [0u8; 28];
    b[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
    b[8..24].copy_from_slice(&a.ip().octets());
    b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
    b
}

/// The routing variables (`$ai_gateway_route`, `$ai_gateway_target`, `$ai_gateway_attempts`,
/// `$ai_gateway_upstream_*`).
#[derive(Clone, Copy)]
pub enum RouteVar {
    Route,
    Target,
    Attempts,
    Scheme,
    Host,
    Sni,
    Uri,
    Authorization,
    ApiKey,
    XApiKey,
    AnthropicVersion,
}

/// A routing variable of a routed request (`None` when the request has no route, or the
/// header does not apply to the target's provider).
///
/// # Safety
/// `r` must be the live main request of `ctx`.
pub unsafe fn variable<'c>(
    r: *mut ngx_http_request_t,
    ctx: &'c ctx::RequestCtx,
    var: RouteVar,
) -> Option<Cow<'c, str>> {
    let state = ctx.route.as_ref()?;
    let config = ctx.config()?;
    let routing = &config.routing;
    let route = routing.routes.get(state.route)?;
    let index = state.target()?;
    let target = routing.targets.get(index)?;
    // SAFETY: r is live (caller); its main conf and header strings outlive the call.
    unsafe {
        let req = &*r;
        let resolved = ctx.snapshot.as_ref().and_then(|s| s.targets.get(index));
        let header =
            |name: &str| -> Option<Cow<'c, str>> { Some(Cow::Borrowed(resolved?.header(name)?)) };
        match var {
            RouteVar::Route => Some(Cow::Borrowed(route.name.as_str())).filter(|n| !n.is_empty()),
            RouteVar::Target => Some(Cow::Borrowed(target.name.as_str())),
            RouteVar::Attempts => Some(Cow::Owned(
                decimal(state.attempt as u64 + 1).as_str().to_string(),
            )),
            RouteVar::Scheme => Some(Cow::Borrowed(if target.https { "https" } else { "http" })),
            RouteVar::Host => resolved.map(|t| Cow::Borrowed(t.host_header.as_str())),
            RouteVar::Sni => Some(Cow::Borrowed(target.host.as_str())),
            RouteVar::Uri => {
                let path = escape_path(req.uri.as_bytes());
                let args = (req.args.len > 0).then(|| String::from_utf8_lossy(req.args.as_bytes()));
                Some(Cow::Owned(upstream_uri(
                    route,
                    target,
                    &path,
                    args.as_deref(),
                )))
            }
            RouteVar::Authorization => header("Authorization"),
            RouteVar::ApiKey => header("api-key"),
            RouteVar::XApiKey => header("x-api-key"),
            // the client's own version goes to an Anthropic target as it is
            RouteVar::AnthropicVersion => (target.provider == Provider::Anthropic)
                .then(|| match request_header(req, b"anthropic-version") {
                    Some(v) => Some(Cow::Owned(String::from_utf8_lossy(v).into_owned())),
                    None => resolved?
                        .default_anthropic_version
                        .as_deref()
                        .map(Cow::Borrowed),
                })
                .flatten(),
        }
    }
}

/// The request path as it goes upstream: bytes outside RFC 3986's unreserved set, `/` and a
/// few sub-delimiters are percent-encoded (nginx has decoded `$uri`).
fn escape_path(path: &[u8]) -> Cow<'_, str> {
    let plain = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            )
    };
    if path.iter().all(|&b| plain(b)) {
        // nothing to escape: all ASCII
        return String::from_utf8_lossy(path);
    }
    let mut out = String::with_capacity(path.len() + 16);
    for &b in path {
        if plain(b) {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    Cow::Owned(out)
}
