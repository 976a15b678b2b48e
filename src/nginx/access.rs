//! The access-phase handler: read the body, parse it once, identify the namespace.
//!
//! Body reading follows nginx's mirror module: start `ngx_http_read_client_request_body`,
//! return `NGX_DONE`, and when the body is complete decide, then re-run the phases; the
//! handler is entered again and returns the decision stored in the context.

use std::time::Instant;

use ngx::ffi::{
    ngx_http_core_run_phases, ngx_http_finalize_request, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_DECLINED, NGX_DONE, NGX_ERROR, NGX_HTTP_GET,
    NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ERR,
    NGX_LOG_INFO, NGX_LOG_WARN,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::body::{replace_request_body, request_body};
use super::cluster;
use super::ctx::{self, Phase, RequestCtx};
use super::failover;
use super::guard::guard;
use super::headers::{is_dropped_header, remove_headers, request_header, NgxIncoming};
use super::log_phase::enter;
use super::module::Module;
use super::policy::{log_denial, Held, PolicyState};
use super::respond::send_complete;
use super::route::{health_zone, NgxEnv};
use super::snapshot;
use crate::core::error::GatewayError;
use crate::core::identify::{bearer_token, plain_key, ClientKey};
use crate::core::pipeline::{self, Decision, Request, Verdict};
use crate::core::request::is_json_content_type;

const DECLINED: ngx_int_t = NGX_DECLINED as ngx_int_t;
const DONE: ngx_int_t = NGX_DONE as ngx_int_t;
const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// `NGX_HTTP_ACCESS_PHASE` handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_access_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe { access(r) })
}

unsafe fn access(r: *mut ngx_http_request_t) -> ngx_int_t {
    let started = Instant::now();
    // SAFETY: r is live; confs exist for every request of an http server.
    unsafe {
        if r != (*r).main {
            return DECLINED;
        }
        match Module::location_conf(&*r) {
            // the exposition is not an API request, even under `ai_gateway on` inherited from
            // the server
            Some(lcf) if lcf.is_enabled() && !lcf.metrics => {}
            _ => return DECLINED,
        }
        let Some(snapshot) = snapshot::current(r) else {
            return DECLINED;
        };
        let Some(ctx) = ctx::get_or_create(r) else {
            return SERVER_ERROR;
        };
        match ctx.phase {
            Phase::Decided if failover::is_return(r, ctx) => return failover::next_attempt(r, ctx),
            Phase::Decided => return ctx.status,
            Phase::ReadingBody => return DONE,
            Phase::New => {}
        }
        ctx.snapshot = Some(snapshot);
        ctx.phase = Phase::ReadingBody;

        if remove_headers(&mut (*r).headers_in.headers, (*r).pool, is_dropped_header).is_none() {
            return SERVER_ERROR;
        }

        // the body handler may run (and the request go on to its content handler) inside the
        // call: time spent up to here is the module's, and r must not be touched after DONE
        ctx.overhead_ns += started.elapsed().as_nanos() as u64;
        let rc = ngx_http_read_client_request_body(r, Some(ngx_http_ai_gateway_body_handler));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            if let Some(ctx) = ctx::get(r) {
                ctx.phase = Phase::Decided;
                ctx.status = rc;
            }
            return rc;
        }
        // balance the reference ngx_http_read_client_request_body took (as the mirror module)
        ngx_http_finalize_request(r, DONE);
        DONE
    }
}

/// Called by nginx once the whole body is read (possibly before
/// `ngx_http_read_client_request_body` returns).
unsafe extern "C" fn ngx_http_ai_gateway_body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    let started = Instant::now();
    let status = guard(log, SERVER_ERROR, || unsafe { decide(r) });
    // SAFETY: r is live.
    unsafe {
        if status == cluster::PARKED {
            // waits for Redis; cluster::resume goes on from here
            if let Some(ctx) = ctx::get(r) {
                ctx.overhead_ns += started.elapsed().as_nanos() as u64;
            }
            return;
        }
        proceed(r, status, started);
    }
}

/// Stores the access decision (`status`) and runs the phases again (the access handler then
/// returns it).
///
/// # Safety
/// `r` must be a live main request whose body has been read.
pub(super) unsafe fn proceed(r: *mut ngx_http_request_t, status: ngx_int_t, started: Instant) {
    // SAFETY: r is live; resuming the phase engine is what nginx's own body handlers do.
    unsafe {
        let log = (*(*r).connection).log;
        if let Some(ctx) = ctx::get(r) {
            ctx.phase = Phase::Decided;
            ctx.status = status;
            if let Some(route) = ctx.route.as_mut() {
                route.uri_changes = (*r).uri_changes();
            }
            if status != DECLINED && Module::location_conf(&*r).is_some_and(|l| l.route()) {
                // the gateway's own answer is not an upstream failure to fail over from
                (*r).set_error_page(1);
            }
            guard(log, (), || enter(r, ctx));
            ctx.overhead_ns += started.elapsed().as_nanos() as u64;
        }
        (*r).set_preserve_body(1);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

/// Runs the pipeline on the read body and maps its decision onto the request; returns
/// `NGX_DECLINED`, a status, or [`cluster::PARKED`] (Redis is asked first).
unsafe fn decide(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live and its body has been read; ctx was created by the access handler.
    unsafe {
        let log = (*(*r).connection).log;
        let Some(ctx) = ctx::get(r) else {
            return SERVER_ERROR;
        };
        let Some(snapshot) = ctx.snapshot.clone() else {
            return SERVER_ERROR;
        };
        let req = &*r;
        let body = match request_body(req) {
            Ok(b) => b,
            Err(msg) => {
                ngx::ngx_log_error!(NGX_LOG_ERR, log, "ai_gateway: {}", msg);
                return SERVER_ERROR;
            }
        };
        let content_type = (!req.headers_in.content_type.is_null())
            .then(|| (*req.headers_in.content_type).value.as_bytes());
        let lcf = Module::location_conf(req);
        let mcf = Module::main_conf(req);
        let key = client_key(req).map(ClientKey::new);
        ctx.key = key;
        let request = Request {
            body: &body,
            json_content_type: is_json_content_type(content_type),
            key,
            uri: req.uri.as_bytes(),
            routed: lcf.is_some_and(|l| l.route()),
            get: req.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize != 0,
            stream_usage: lcf.is_some_and(|l| l.stream_usage()),
            cluster: mcf.and_then(|m| m.cluster.as_ref()),
        };
        let zone = health_zone(r);
        let mut env = NgxEnv { zone };
        let d = pipeline::decide(
            &snapshot.config,
            &request,
            &NgxIncoming { r: req },
            &mut env,
        );
        if d.ask.is_some() && matches!(d.verdict, Verdict::Allow) {
            return cluster::ask(r, d);
        }
        apply(r, d, Held::default())
    }
}

/// Maps a decision onto the request: its context, log lines, new body; returns
/// `NGX_DECLINED` or a status. `held`: what the request took of its cluster counters.
///
/// # Safety
/// `r` must be a live main request whose body has been read, with its context.
pub(super) unsafe fn apply(r: *mut ngx_http_request_t, d: Decision, held: Held) -> ngx_int_t {
    // SAFETY: as the caller's.
    unsafe {
        let log = (*(*r).connection).log;
        let Some(ctx) = ctx::get(r) else {
            return SERVER_ERROR;
        };
        let lcf = Module::location_conf(&*r);
        let zone = health_zone(r);
        ctx.namespace = d.namespace;
        ctx.via = d.via;
        ctx.summary = d.summary;
        if !d.policy.denials.is_empty() {
            let code = ctx.namespace_code().unwrap_or("");
            let level = lcf.map_or(NGX_LOG_WARN as ngx_uint_t, |l| l.policy_log_level());
            for denial in &d.policy.denials {
                log_denial(log, level, code, denial);
            }
        }
        let zone = if d.took_counters { zone } else { None };
        ctx.policy = Some(Box::new(PolicyState::new(d.policy, zone, held)));
        match d.verdict {
            Verdict::Reject {
                error,
                logged: true,
            } => {
                let status = error.status() as ngx_int_t;
                ctx.error = Some(error);
                status
            }
            Verdict::Reject {
                error,
                logged: false,
            } => reject(r, ctx, error),
            Verdict::Answer(body) => {
                ctx.answer = Some(body);
                // served in the content phase, instead of the location's proxy_pass
                (*r).content_handler = Some(ngx_http_ai_gateway_answer_handler);
                DECLINED
            }
            Verdict::Allow => {
                if d.prompt.is_some() {
                    ctx.prompt = d.prompt;
                }
                ctx.route = d.route;
                if let Some(new_body) = d.body {
                    if !replace_request_body(r, &new_body) {
                        return SERVER_ERROR;
                    }
                    ctx.added_include_usage = d.added_include_usage;
                }
                DECLINED
            }
        }
    }
}

/// The content handler of a request the gateway answers itself (the model list).
unsafe extern "C" fn ngx_http_ai_gateway_answer_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a live request in its content phase; the answer is owned by its
    // context, and send_complete copies it.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe {
        let Some(body) = ctx::get(r).and_then(|c| c.answer.take()) else {
            return SERVER_ERROR;
        };
        send_complete(r, 200, b"application/json", &body)
    })
}

/// The client key: `Authorization: Bearer`, then `x-api-key`, then `api-key`.
///
/// # Safety
/// `r` must be a live request.
unsafe fn client_key(r: &ngx_http_request_t) -> Option<&[u8]> {
    // SAFETY: headers_in.authorization is null or points into the header list.
    unsafe {
        if !r.headers_in.authorization.is_null() {
            if let Some(k) = bearer_token((*r.headers_in.authorization).value.as_bytes()) {
                return Some(k);
            }
        }
        request_header(r, b"x-api-key")
            .and_then(plain_key)
            .or_else(|| request_header(r, b"api-key").and_then(plain_key))
    }
}

/// Records a rejection for the error filter and the variables; returns its status.
unsafe fn reject(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, err: GatewayError) -> ngx_int_t {
    // SAFETY: r is live.
    let log = unsafe { (*(*r).connection).log };
    ngx::ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "ai_gateway: rejected with {}: {}{}{}",
        err.status(),
        err.code(),
        ctx.namespace_code().map_or("", |_| ", namespace "),
        ctx.namespace_code().unwrap_or("")
    );
    let status = err.status() as ngx_int_t;
    ctx.error = Some(err);
    if status <= 0 {
        return NGX_ERROR as ngx_int_t;
    }
    status
}
