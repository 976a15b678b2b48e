//! `ai_gateway_metrics;`: the content handler serving the Prometheus exposition of the
//! metrics zone (every worker's numbers, since they all write the same shared memory).

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, ngx_time, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_OK,
    NGX_LOG_ERR,
};
use ngx::http::HttpModuleMainConf;

use super::guard::guard;
use super::log_phase::metrics_store;
use super::module::Module;
use super::respond::{read_only, send_complete};
use super::snapshot;
use crate::core::metrics::{render, RenderInfo, SyncInfo};
use crate::runtime::redis_source::SyncError;

use super::config_source;

/// The sync error reasons, by index.
static REASONS: [&str; 7] = [
    SyncError::ALL[0].reason(),
    SyncError::ALL[1].reason(),
    SyncError::ALL[2].reason(),
    SyncError::ALL[3].reason(),
    SyncError::ALL[4].reason(),
    SyncError::ALL[5].reason(),
    SyncError::ALL[6].reason(),
];

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const CONTENT_TYPE: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_metrics_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe { serve(r) })
}

unsafe fn serve(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live; the response body is copied into the request pool before it is sent.
    unsafe {
        if let Err(rc) = read_only(r) {
            return rc;
        }
        let Some(store) = metrics_store(r) else {
            ngx::ngx_log_error!(
                NGX_LOG_ERR,
                (*(*r).connection).log,
                "ai_gateway: metrics zone is not initialised"
            );
            return SERVER_ERROR;
        };
        let mcf = Module::main_conf(&*r);
        let snapshot = mcf.and_then(snapshot::of_conf);
        let label = snapshot.as_ref().map(|s| s.label());
        let text = render(
            &store,
            &RenderInfo {
                now_secs: ngx_time() as u64,
                config_version: label.as_deref(),
                config_source: snapshot.as_ref().map_or("", |s| s.origin.source.as_str()),
                config_sha256: snapshot.as_ref().map_or("", |s| s.origin.sha256.as_str()),
                sync: mcf.and_then(|m| m.source.as_ref()).map(|_| SyncInfo {
                    reasons: &REASONS,
                    seconds_behind: config_source::seconds_behind().unwrap_or(0),
                }),
                cluster: mcf.is_some_and(|m| m.cluster.is_some()),
                access_log: mcf.is_some_and(|m| m.usage_log.is_some()),
                module_version: env!("CARGO_PKG_VERSION"),
                nginx_version: env!("AI_GATEWAY_NGINX_VERSION").trim_start_matches("nginx/"),
            },
        );

        send_complete(r, NGX_HTTP_OK as usize, CONTENT_TYPE, text.as_bytes())
    }
}
