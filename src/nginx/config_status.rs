//! `ai_gateway_config_status;`: what configuration this worker serves, its sync state, its
//! targets' passive health (read now), and (with the Redis source) the head published in
//! Redis now, read live: the request is parked on the bridge until Redis answers or
//! `ai_gateway_redis ... timeout=` passes (then 504). Never shows keys or credentials:
//! versions, hashes, times and errors only.

use std::any::Any;

use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR};
use ngx::http::HttpModuleMainConf;
use redis::AsyncCommands;
use serde_json::{json, Value};

use super::bridge;
use super::config_source::shared;
use super::guard::guard;
use super::module::Module;
use super::respond::{read_only, send_complete};
use super::snapshot;
use super::target_health;
use crate::core::snapshot::head::Head;
use crate::runtime::redis_source::status_json;

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const JSON: &[u8] = b"application/json";

/// What the live read of the head found.
type Published = Result<Option<Head>, String>;

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_config_status_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe { handle(r) })
}

unsafe fn handle(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live, in its content phase.
    unsafe {
        if let Err(rc) = read_only(r) {
            return rc;
        }
        let local = local_status(r);
        let Some(mcf) = Module::main_conf(&*r) else {
            return SERVER_ERROR;
        };
        let (Some(redis), Some(shared)) = (mcf.redis.clone(), shared()) else {
            return answer(r, 200, with_published(local, None));
        };
        let timeout = redis.timeout;
        let key = redis.key("cfg:head");
        let info = redis.info.clone();
        let read = async move {
            // the source's connection, else one of its own (the source may be reconnecting)
            let conn = shared.conn.lock().ok().and_then(|c| c.clone());
            let mut conn = match conn {
                Some(c) => c,
                None => {
                    let client = redis::Client::open(info).map_err(|e| e.to_string())?;
                    match tokio::time::timeout(
                        timeout * 2,
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => return Err(e.to_string()) as Published,
                        Err(_) => return Err("no answer".to_string()),
                    }
                }
            };
            let raw: Option<Vec<u8>> = match tokio::time::timeout(timeout * 2, conn.get(key)).await
            {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no answer".to_string()),
            };
            match raw {
                None => Ok(None),
                Some(b) => Head::parse(&b).map(Some),
            }
        };
        let ms = timeout.as_millis() as u64;
        let resume: bridge::Resume = Box::new(move |r, value: Option<Box<dyn Any + Send>>| {
            let published = value.and_then(|v| v.downcast::<Published>().ok());
            // the bridge resumes a live, parked request on the nginx thread; an error answer
            // still says what the worker serves
            match published.map(|p| *p) {
                None => answer(
                    r,
                    504,
                    error_json(
                        "store_timeout",
                        &format!("Redis did not answer within {ms} ms"),
                        Some(local),
                    ),
                ),
                Some(Err(e)) => answer(r, 503, error_json("store_unavailable", &e, Some(local))),
                Some(Ok(head)) => answer(r, 200, with_published(local, Some(head))),
            }
        });
        if !bridge::park(r, ms, read, resume) {
            return answer(
                r,
                503,
                error_json(
                    "store_unavailable",
                    "the worker runtime is not running",
                    None,
                ),
            );
        }
        NGX_DONE as ngx_int_t
    }
}

/// This worker's status, from the snapshot it serves and the source's state.
///
/// # Safety
/// `r` must be a live request.
unsafe fn local_status(r: *mut ngx_http_request_t) -> Value {
    // SAFETY: r is live (caller).
    let (snap, node) = unsafe {
        let mcf = Module::main_conf(&*r);
        (
            mcf.and_then(snapshot::of_conf),
            mcf.and_then(|m| m.source.as_ref()).map(|s| s.node.clone()),
        )
    };
    let status = shared()
        .and_then(|s| s.status.lock().ok().map(|s| s.clone()))
        .unwrap_or_default();
    // SAFETY: a plain global of the worker.
    let worker = unsafe { ngx::ffi::ngx_worker };
    let mut v = status_json(node.as_deref().unwrap_or(""), worker, &status);
    // what this worker serves, from the snapshot itself
    v["applied"] = snap.as_ref().map_or(Value::Null, |s| {
        json!({
            "version": s.origin.version,
            "epoch": s.origin.epoch,
            "sha256": s.origin.sha256,
            "source": s.origin.source.as_str(),
            "label": s.label(),
        })
    });
    // the targets' health now, not as the last heartbeat read it
    // SAFETY: r is live (caller): its main conf is the running cycle's; nginx thread.
    if let Some(view) = unsafe { Module::main_conf(&*r).map(|m| target_health::read(m)) } {
        v["targets"] = view.targets_json();
        v["targets_at_ms"] = Value::from(view.at_ms);
    }
    v["source"] = Value::from(if node.is_some() { "redis" } else { "file" });
    v["parked_requests"] = Value::from(bridge::parked());
    v
}

fn with_published(mut local: Value, head: Option<Option<Head>>) -> Value {
    let current = match (&head, local.get("applied")) {
        (Some(Some(h)), Some(a)) => Some(
            a.get("version").and_then(Value::as_u64) == Some(h.version)
                && a.get("sha256").and_then(Value::as_str) == Some(h.sha256.as_str())
                && a.get("epoch").and_then(Value::as_str) == Some(h.epoch.as_str()),
        ),
        _ => None,
    };
    local["published"] = match head {
        Some(Some(h)) => json!({"version": h.version, "epoch": h.epoch, "sha256": h.sha256}),
        _ => Value::Null,
    };
    local["current"] = current.map_or(Value::Null, Value::from);
    local
}

/// An error answer; `worker` is this worker's own status, when known.
fn error_json(code: &str, message: &str, worker: Option<Value>) -> Value {
    let mut v = json!({"error": {"code": code, "message": message}});
    if let Some(w) = worker {
        v["worker"] = w;
    }
    v
}

/// # Safety
/// `r` must be a live request in its content phase.
unsafe fn answer(r: *mut ngx_http_request_t, status: usize, body: Value) -> ngx_int_t {
    let mut text = body.to_string();
    text.push('\n');
    // SAFETY: as the caller's.
    unsafe { send_complete(r, status, JSON, text.as_bytes()) }
}
