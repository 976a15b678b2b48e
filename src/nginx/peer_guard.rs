//! Provider connections shared between tenants: a pooled connection is only used again when
//! nothing is waiting on it, and an answer without an HTTP/1.x status line is a failed
//! attempt.
//!
//! nginx's `keepalive` pools a connection once the response's framing was complete
//! (`Content-Length` consumed, the chunked terminator read) and closes it when more bytes
//! came in the same read. Bytes a provider writes after that, a few microseconds later (more
//! than its `Content-Length`, a second response), would be read by the next request of any
//! namespace that takes the connection. So every `upstream {}` block's peer selection is
//! wrapped (as `keepalive` wraps the balancer): when a connection is given back, and when a
//! pooled one is taken, the socket is checked; a connection with unread bytes (or closed by
//! the provider) is closed instead, with a warning. And the proxy's HTTP/0.9 fallback (bytes
//! without a status line passed to the client as a 200) is turned into nginx's "invalid
//! header" failure for gateway requests: failover, or a 502 in JSON.
//!
//! Bytes a provider writes after the next request was sent on the connection cannot be told
//! from its answer to that request (no HTTP/1.1 client can), so a provider caught once
//! (bytes after a response, more than its framing said, an answer without a status line on
//! a reused connection) has none of its connections kept by this worker for
//! [`UNTRUSTED_MS`]: whatever it does later reaches only the request that asked.

use std::cell::RefCell;
use std::ffi::c_void;

use ngx::ffi::{
    ngx_close_connection, ngx_conf_t, ngx_connection_t, ngx_destroy_pool, ngx_event_free_peer_pt,
    ngx_event_get_peer_pt, ngx_event_notify_peer_pt, ngx_event_save_peer_session_pt,
    ngx_event_set_peer_session_pt, ngx_http_request_t, ngx_http_upstream_free_round_robin_peer,
    ngx_http_upstream_init_peer_pt, ngx_http_upstream_srv_conf_t, ngx_int_t, ngx_palloc,
    ngx_peer_connection_t, ngx_uint_t, recv, SSL_pending, MSG_DONTWAIT, MSG_PEEK, NGX_DONE,
    NGX_ERROR, NGX_HTTP_UPSTREAM_INVALID_HEADER, NGX_HTTP_VERSION_9, NGX_LOG_WARN, NGX_OK,
    NGX_PEER_FAILED,
};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use super::ctx;
use super::guard::guard;
use super::module::Module;
use super::route;
use crate::core::routing::trust::{Untrusted, UNTRUSTED_MS};

thread_local! {
    /// The providers this worker no longer pools connections to (nginx thread only).
    static UNTRUSTED: RefCell<Untrusted> = RefCell::new(Untrusted::default());
}

fn now_ms() -> u64 {
    // SAFETY: nginx's cached time, only written by the worker's own thread.
    unsafe { ngx::ffi::ngx_current_msec as u64 }
}

/// The peer's address as bytes (borrowed from the request pool).
///
/// # Safety
/// `pc` must be live for `'a`.
unsafe fn peer_addr<'a>(pc: *mut ngx_peer_connection_t) -> Option<&'a [u8]> {
    // SAFETY: sockaddr is null or socklen bytes of the request pool.
    unsafe {
        let sa = (*pc).sockaddr as *const u8;
        (!sa.is_null()).then(|| std::slice::from_raw_parts(sa, (*pc).socklen as usize))
    }
}

/// Whether this worker keeps no connection to the peer now.
///
/// # Safety
/// `pc` must be live.
unsafe fn untrusted(pc: *mut ngx_peer_connection_t) -> bool {
    // SAFETY: pc is live (caller).
    let Some(addr) = (unsafe { peer_addr(pc) }) else {
        return false;
    };
    UNTRUSTED.with(|u| u.borrow().contains(addr, now_ms()))
}

/// Stops keeping connections to the peer (logged when it starts).
///
/// # Safety
/// `pc` must be live.
unsafe fn distrust(pc: *mut ngx_peer_connection_t, why: &str) {
    // SAFETY: pc is live (caller).
    let Some(addr) = (unsafe { peer_addr(pc) }) else {
        return;
    };
    let started = UNTRUSTED.with(|u| u.borrow_mut().distrust(addr, now_ms()));
    if started {
        // SAFETY: pc is live (caller).
        unsafe {
            ngx::ngx_log_error!(
                NGX_LOG_WARN,
                (*pc).log,
                "ai_gateway: {} {}: its connections are not kept for {} s",
                peer_name(pc),
                why,
                UNTRUSTED_MS / 1000
            );
        }
    }
}

/// An `upstream {}` block's own per-request peer initialisation, kept by the wrapper.
pub struct Wrapped {
    uscf: *mut ngx_http_upstream_srv_conf_t,
    init: ngx_http_upstream_init_peer_pt,
}

/// Wraps the peer selection of every upstream block (called from postconfiguration, after
/// nginx initialised the blocks' balancers and `keepalive`).
///
/// # Safety
/// Only during configuration, on the nginx thread.
pub unsafe fn install(cf: *mut ngx_conf_t) -> bool {
    // SAFETY: the upstream module's main conf and its array of blocks belong to the cycle
    // being configured.
    unsafe {
        let Some(umcf) = NgxHttpUpstreamModule::main_conf_mut(&*cf) else {
            return true;
        };
        let Some(mcf) = Module::main_conf_mut(&*cf) else {
            return false;
        };
        let blocks = std::slice::from_raw_parts(
            umcf.upstreams.elts as *const *mut ngx_http_upstream_srv_conf_t,
            umcf.upstreams.nelts,
        );
        for &uscf in blocks {
            if uscf.is_null() || (*uscf).peer.init.is_none() {
                continue;
            }
            mcf.wrapped_upstreams.push(Wrapped {
                uscf,
                init: (*uscf).peer.init,
            });
            (*uscf).peer.init = Some(init_peer);
        }
        true
    }
}

/// The wrapped selection of one request: the block's own callbacks and their data.
struct Peer {
    r: *mut ngx_http_request_t,
    data: *mut c_void,
    get: ngx_event_get_peer_pt,
    free: ngx_event_free_peer_pt,
    notify: ngx_event_notify_peer_pt,
    set_session: ngx_event_set_peer_session_pt,
    save_session: ngx_event_save_peer_session_pt,
    /// The proxy's status line reader and reinitialisation (which installs the reader again
    /// before another try), for the HTTP/0.9 check (gateway requests only).
    process_header: Handler,
    reinit_request: Handler,
    /// The block's own release may keep the connection (`keepalive`, or another module
    /// that pools): only then is it checked when given back.
    may_keep: bool,
}

/// Whether a release callback closes every connection (nginx's round robin, the routed
/// peer of `ai_gateway_upstream`): a block without `keepalive` pools nothing.
fn closes_always(free: ngx_event_free_peer_pt) -> bool {
    let Some(f) = free else {
        return true;
    };
    let f = f as usize;
    f == ngx_http_upstream_free_round_robin_peer as *const () as usize
        || f == route::free_peer as *const () as usize
}

type Handler = Option<unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t>;

fn same(a: Handler, b: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t) -> bool {
    a.is_some_and(|a| a as usize == b as usize)
}

unsafe extern "C" fn init_peer(
    r: *mut ngx_http_request_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request whose upstream is being set up.
    let log = unsafe { (*(*r).connection).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe { init(r, us) })
}

unsafe fn init(r: *mut ngx_http_request_t, us: *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t {
    // SAFETY: r is live; u was created by the proxy module; the Peer lives in r's pool,
    // which outlives every call nginx makes with it.
    unsafe {
        let inner = Module::main_conf(&*r).and_then(|m| {
            m.wrapped_upstreams
                .iter()
                .find(|w| w.uscf == us)
                .and_then(|w| w.init)
        });
        let Some(inner) = inner else {
            return NGX_ERROR as ngx_int_t;
        };
        let rc = inner(r, us);
        let u = (*r).upstream;
        if rc != NGX_OK as ngx_int_t || u.is_null() {
            return rc;
        }
        let gateway = ctx::get((*r).main).is_some_and(|c| c.snapshot.is_some());
        let pc = &mut (*u).peer;
        // plain data, nothing to drop: the pool's memory, without a cleanup
        let p = ngx_palloc((*r).pool, std::mem::size_of::<Peer>()) as *mut Peer;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        p.write(Peer {
            r,
            data: pc.data,
            get: pc.get,
            free: pc.free,
            notify: pc.notify,
            set_session: pc.set_session,
            save_session: pc.save_session,
            process_header: if gateway { (*u).process_header } else { None },
            reinit_request: if gateway { (*u).reinit_request } else { None },
            may_keep: !closes_always(pc.free),
        });
        pc.data = p.cast();
        pc.get = Some(get_peer);
        pc.free = Some(free_peer);
        if pc.notify.is_some() {
            pc.notify = Some(notify_peer);
        }
        if pc.set_session.is_some() {
            pc.set_session = Some(set_session);
        }
        if pc.save_session.is_some() {
            pc.save_session = Some(save_session);
        }
        if gateway && (*u).process_header.is_some() {
            (*u).process_header = Some(process_status_line);
            if (*u).reinit_request.is_some() {
                (*u).reinit_request = Some(reinit_request);
            }
        }
        rc
    }
}

/// What is waiting on an idle connection.
#[derive(Debug, PartialEq, Eq)]
enum Idle {
    Clean,
    /// Bytes nobody asked for (or TLS data already decrypted).
    Unread,
    /// The provider closed it (or it failed).
    Closed,
}

/// Looks at an idle connection without reading from it.
///
/// # Safety
/// `c` must be a live connection.
unsafe fn idle_state(c: *mut ngx_connection_t) -> Idle {
    // SAFETY: c is live; its ssl connection, when set, is a live SSL object.
    unsafe {
        if let Some(ssl) = (*c).ssl.as_ref() {
            if !ssl.connection.is_null() && SSL_pending(ssl.connection) > 0 {
                return Idle::Unread;
            }
        }
        let mut byte = 0u8;
        let n = recv(
            (*c).fd,
            (&mut byte as *mut u8).cast(),
            1,
            (MSG_PEEK | MSG_DONTWAIT) as _,
        );
        match n {
            1.. => Idle::Unread,
            0 => Idle::Closed,
            _ => match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Idle::Clean,
                _ => Idle::Closed,
            },
        }
    }
}

/// Closes a connection taken from the pool (as `keepalive` closes the ones it drops).
///
/// # Safety
/// `c` must be a live connection that nothing else refers to any more.
unsafe fn close(c: *mut ngx_connection_t) {
    // SAFETY: c is live and ours (caller).
    unsafe {
        if let Some(ssl) = (*c).ssl.as_mut() {
            ssl.set_no_wait_shutdown(1);
            ssl.set_no_send_shutdown(1);
            // with both set this frees the TLS state at once
            let _ = ngx::ffi::ngx_ssl_shutdown(c);
        }
        if !(*c).pool.is_null() {
            ngx_destroy_pool((*c).pool);
        }
        ngx_close_connection(c);
    }
}

/// The name of the upstream peer, for messages.
///
/// # Safety
/// `pc` must be live.
unsafe fn peer_name(pc: *mut ngx_peer_connection_t) -> String {
    // SAFETY: name is null or an ngx_str_t of the request pool.
    unsafe {
        (*pc).name.as_ref().map_or_else(String::new, |n| {
            String::from_utf8_lossy(n.as_bytes()).into_owned()
        })
    }
}

unsafe extern "C" fn get_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: data is the Peer init stored; pc is its request's peer connection.
    let log = unsafe { (*pc).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe {
        let p = &*(data as *const Peer);
        let Some(get) = p.get else {
            return NGX_ERROR as ngx_int_t;
        };
        let rc = get(pc, p.data);
        let c = (*pc).connection;
        if rc != NGX_DONE as ngx_int_t || c.is_null() {
            return rc;
        }
        // a pooled connection: it must have nothing waiting on it
        let state = idle_state(c);
        if state == Idle::Clean && !untrusted(pc) {
            return rc;
        }
        if state == Idle::Unread {
            distrust(pc, "had bytes waiting on an idle connection");
        }
        close(c);
        (*pc).connection = std::ptr::null_mut();
        (*pc).set_cached(0);
        // connect anew to the address the balancer chose
        NGX_OK as ngx_int_t
    })
}

unsafe extern "C" fn free_peer(
    pc: *mut ngx_peer_connection_t,
    data: *mut c_void,
    state: ngx_uint_t,
) {
    // SAFETY: as for get_peer; p.r owns the upstream being finalised.
    let log = unsafe { (*pc).log };
    guard(log, (), || unsafe {
        let p = &*(data as *const Peer);
        let c = (*pc).connection;
        let u = (*p.r).upstream;
        if p.may_keep && !c.is_null() && !u.is_null() && state & NGX_PEER_FAILED as ngx_uint_t == 0
        {
            let u = &mut *u;
            if u.keepalive() != 0 {
                match idle_state(c) {
                    Idle::Unread => {
                        distrust(pc, "sent bytes after its response");
                        u.set_keepalive(0);
                    }
                    Idle::Closed => u.set_keepalive(0),
                    Idle::Clean if untrusted(pc) => u.set_keepalive(0),
                    Idle::Clean => {
                        // the socket was just found empty: keepalive need not look again
                        // (it does when the read event is ready), which saves a recv
                        (*(*c).read).set_ready(0);
                    }
                }
            } else if u.header_sent() != 0
                && u.upgrade() == 0
                && u.buffering() == 0
                && u.length == 0
                && u.headers_in.connection_close() == 0
            {
                // the whole response was passed on (its length reached 0) and the connection
                // could have been kept, yet nginx did not keep it: it found more than the
                // response's Content-Length or chunked framing said
                distrust(pc, "sent more than its response's framing");
            }
        }
        if let Some(free) = p.free {
            free(pc, p.data, state);
        }
    });
}

unsafe extern "C" fn notify_peer(
    pc: *mut ngx_peer_connection_t,
    data: *mut c_void,
    ty: ngx_uint_t,
) {
    // SAFETY: as for get_peer.
    let log = unsafe { (*pc).log };
    guard(log, (), || unsafe {
        let p = &*(data as *const Peer);
        if let Some(notify) = p.notify {
            notify(pc, p.data, ty);
        }
    });
}

unsafe extern "C" fn set_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: as for get_peer.
    let log = unsafe { (*pc).log };
    guard(log, NGX_OK as ngx_int_t, || unsafe {
        let p = &*(data as *const Peer);
        p.set_session.map_or(NGX_OK as ngx_int_t, |f| f(pc, p.data))
    })
}

unsafe extern "C" fn save_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) {
    // SAFETY: as for get_peer.
    let log = unsafe { (*pc).log };
    guard(log, (), || unsafe {
        let p = &*(data as *const Peer);
        if let Some(f) = p.save_session {
            f(pc, p.data);
        }
    });
}

/// The Peer of a request whose status line reader is ours.
///
/// # Safety
/// `r` must be a live request.
unsafe fn gateway_peer<'a>(r: *mut ngx_http_request_t) -> Option<&'a Peer> {
    // SAFETY: r is live; once our reader is installed, u->peer.data is the Peer init stored
    // (nothing replaces it later), in the request pool.
    unsafe {
        let u = (*r).upstream.as_ref()?;
        if !same(u.process_header, process_status_line) && !same(u.reinit_request, reinit_request) {
            return None;
        }
        (u.peer.data as *const Peer).as_ref()
    }
}

/// The proxy's reinitialisation before another try of the same upstream, then our reader
/// again in place of the one it installs.
unsafe extern "C" fn reinit_request(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: as for process_status_line.
    let log = unsafe { (*(*r).connection).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe {
        let Some(p) = gateway_peer(r) else {
            return NGX_ERROR as ngx_int_t;
        };
        let Some(inner) = p.reinit_request else {
            return NGX_ERROR as ngx_int_t;
        };
        let rc = inner(r);
        let u = (*r).upstream;
        if rc == NGX_OK as ngx_int_t && (*u).process_header.is_some() {
            (*u).process_header = Some(process_status_line);
        }
        rc
    })
}

/// The proxy's status line reader, with its HTTP/0.9 fallback refused: an answer that does
/// not start with an HTTP/1.x status line (none at all, or `HTTP/2.0 200` on a connection
/// that speaks HTTP/1.1) is an invalid header (a failed attempt).
unsafe extern "C" fn process_status_line(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes the live request whose upstream is reading the response header;
    // u->peer.data is the Peer init stored (process_status_line is only installed with it).
    let log = unsafe { (*(*r).connection).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe {
        let Some(p) = gateway_peer(r) else {
            return NGX_ERROR as ngx_int_t;
        };
        let u = (*r).upstream;
        let Some(inner) = p.process_header else {
            return NGX_ERROR as ngx_int_t;
        };
        // the buffer holds the answer from its first byte until the status line is read
        let b = &(*u).buffer;
        if !b.start.is_null() && b.last.offset_from(b.start) >= 7 {
            let head = std::slice::from_raw_parts(b.start, 7);
            if head.starts_with(b"HTTP/") && &head[5..] != b"1." {
                ngx::ngx_log_error!(
                    ngx::ffi::NGX_LOG_ERR,
                    log,
                    "ai_gateway: upstream sent a status line of another HTTP version than 1.x"
                );
                (*u).headers_in.set_connection_close(1);
                return NGX_HTTP_UPSTREAM_INVALID_HEADER as ngx_int_t;
            }
        }
        let version = (*r).http_version;
        let rc = inner(r);
        if rc == NGX_OK as ngx_int_t
            && (*r).http_version == NGX_HTTP_VERSION_9 as ngx_uint_t
            && version != NGX_HTTP_VERSION_9 as ngx_uint_t
        {
            (*r).http_version = version;
            (*u).headers_in.set_connection_close(1);
            if (*u).peer.cached() != 0 {
                // on a reused connection: bytes a provider sent after an earlier answer
                distrust(
                    &mut (*u).peer,
                    "answered without a status line on a reused connection",
                );
            }
            return NGX_HTTP_UPSTREAM_INVALID_HEADER as ngx_int_t;
        }
        rc
    })
}
