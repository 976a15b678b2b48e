//! `ai_gateway_token_service;`: the content handler of the token service (see
//! `core::tokens::service` for its API). The body is read, counted and answered in one go;
//! counting runs on the worker (about 1 ms per 32 KB of text), so the location's
//! `client_max_body_size` bounds what one request can cost.

use ngx::ffi::{
    ngx_http_finalize_request, ngx_http_output_filter, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_pnalloc, ngx_str_t, NGX_DONE,
    NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_ERR, NGX_OK,
};

use super::body::request_body;
use super::filter::memory_chain;
use super::guard::guard;
use crate::core::tokens::service::answer;

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const JSON: &[u8] = b"application/json";

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_token_service_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    guard(log, SERVER_ERROR, || unsafe {
        let rc = ngx_http_read_client_request_body(r, Some(body_handler));
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        NGX_DONE as ngx_int_t
    })
}

unsafe extern "C" fn body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request whose body has been read.
    let log = unsafe { (*(*r).connection).log };
    let rc = guard(log, SERVER_ERROR, || unsafe { respond(r) });
    // SAFETY: ends the request, balancing the reference taken by the body reader.
    unsafe { ngx_http_finalize_request(r, rc) };
}

unsafe fn respond(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live and its body was read; the answer is copied into the request pool.
    unsafe {
        let reply = {
            let body = match request_body(&*r) {
                Ok(b) => b,
                Err(msg) => {
                    ngx::ngx_log_error!(NGX_LOG_ERR, (*(*r).connection).log, "ai_gateway: {}", msg);
                    return SERVER_ERROR;
                }
            };
            answer((*r).method_name.as_bytes(), (*r).uri.as_bytes(), &body)
        };
        let out = &mut (*r).headers_out;
        out.status = reply.status as usize;
        out.content_length_n = reply.body.len() as i64;
        out.content_type = ngx_str_t {
            len: JSON.len(),
            data: JSON.as_ptr().cast_mut(),
        };
        out.content_type_len = JSON.len();
        out.content_type_lowcase = std::ptr::null_mut();
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        let p = ngx_pnalloc((*r).pool, reply.body.len().max(1)) as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        std::ptr::copy_nonoverlapping(reply.body.as_ptr(), p, reply.body.len());
        let Some(chain) = memory_chain(r, std::slice::from_raw_parts(p, reply.body.len()), true)
        else {
            return NGX_ERROR as ngx_int_t;
        };
        ngx_http_output_filter(r, chain)
    }
}
