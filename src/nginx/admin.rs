//! `ai_gateway_admin;`: the config center's content handler. It reads the request body,
//! hands the request over as plain data (`runtime::admin::ApiRequest`) to the worker's
//! runtime, parks the request on the bridge until the answer comes back (or a timer
//! fires: 504 JSON), and sends it. The API's logic lives in `core::admin` and
//! `runtime::admin`.

use std::any::Any;

use ngx::ffi::{
    ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR,
};

use super::admin_conf::admin;
use super::body::{finish_after_body, read_body_then, request_body};
use super::bridge;
use super::headers::{add_response_header, find_header};
use super::respond::send_complete;
use crate::core::admin::error::ApiError;
use crate::runtime::admin::{serve, ApiRequest, ApiResponse};

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
/// How long a request may wait for its answer beyond the MySQL timeout (a write can wait
/// up to a minute for propagation with `?wait_applied=`).
const MARGIN_MS: u64 = 65_000;

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_admin_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request in its content phase.
    unsafe { read_body_then(r, Some(body_handler)) }
}

unsafe extern "C" fn body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request whose body has been read.
    unsafe { finish_after_body(r, start) }
}

/// Collects the request and parks it until the runtime answers.
unsafe fn start(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live and its body was read.
    unsafe {
        let Some(admin) = admin() else {
            return send(
                r,
                &ApiResponse::error(&ApiError::unavailable(
                    "the config center is not running in this worker",
                )),
            );
        };
        let req = match collect(r) {
            Ok(req) => req,
            Err(msg) => {
                ngx::ngx_log_error!(NGX_LOG_ERR, (*(*r).connection).log, "ai_gateway: {}", msg);
                return SERVER_ERROR;
            }
        };
        let limit_ms = admin.db.timeout.as_millis() as u64 * 4 + MARGIN_MS;
        let resume: bridge::Resume = Box::new(move |r, value: Option<Box<dyn Any + Send>>| {
            match value.and_then(|v| v.downcast::<ApiResponse>().ok()) {
                Some(resp) => send(r, &resp),
                None => send(
                    r,
                    &ApiResponse::error(&ApiError::new(
                        504,
                        "timeout",
                        format!("no answer within {limit_ms} ms"),
                    )),
                ),
            }
        });
        if !bridge::park(r, limit_ms, serve(admin, req), resume) {
            return send(
                r,
                &ApiResponse::error(&ApiError::unavailable("the worker runtime is not running")),
            );
        }
        NGX_DONE as ngx_int_t
    }
}

/// The request as plain data.
///
/// # Safety
/// `r` must be a live request whose body was read.
unsafe fn collect(r: *mut ngx_http_request_t) -> Result<ApiRequest, String> {
    // SAFETY: as the caller's; everything is copied out of the request.
    unsafe {
        let rq = &*r;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut req = ApiRequest {
            method: text(rq.method_name.as_bytes()),
            path: text(rq.uri.as_bytes()),
            query: text(rq.args.as_bytes()),
            client_ip: text((*rq.connection).addr_text.as_bytes()),
            secure: !(*rq.connection).ssl.is_null(),
            body: request_body(rq)?.into_owned(),
            ..ApiRequest::default()
        };
        let mut cookies: Vec<String> = Vec::new();
        find_header(&rq.headers_in.headers, |h| {
            let name = h.key.as_bytes();
            let value = text(h.value.as_bytes());
            let slot = if name.eq_ignore_ascii_case(b"content-type") {
                Some(&mut req.content_type)
            } else if name.eq_ignore_ascii_case(b"authorization") {
                Some(&mut req.authorization)
            } else if name.eq_ignore_ascii_case(b"if-match") {
                Some(&mut req.if_match)
            } else if name.eq_ignore_ascii_case(b"x-csrf-token") {
                Some(&mut req.csrf)
            } else if name.eq_ignore_ascii_case(b"accept") {
                Some(&mut req.accept)
            } else {
                if name.eq_ignore_ascii_case(b"cookie") {
                    cookies.push(value.clone());
                }
                None
            };
            if let Some(slot) = slot {
                slot.get_or_insert(value);
            }
            None::<()>
        });
        if !cookies.is_empty() {
            req.cookie = Some(cookies.join("; "));
        }
        Ok(req)
    }
}

/// Sends an API answer.
///
/// # Safety
/// `r` must be a live request in its content phase.
unsafe fn send(r: *mut ngx_http_request_t, resp: &ApiResponse) -> ngx_int_t {
    // SAFETY: as the caller's.
    unsafe {
        // the API answers If-Match itself: nginx's not-modified filter would turn every
        // answer to a request with If-Match into a 412 (it knows no ETag of ours)
        (*r).set_disable_not_modified(1);
        for (name, value) in &resp.headers {
            if !add_response_header(r, name, value) {
                return SERVER_ERROR;
            }
        }
        send_complete(
            r,
            resp.status as usize,
            resp.content_type.as_bytes(),
            &resp.body,
        )
    }
}
