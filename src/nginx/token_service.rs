//! `ai_gateway_token_service;`: the content handler of the token service (see
//! `core::tokens::service` for its API). The body is read, counted and answered in one go;
//! counting runs on the worker (about 1 ms per 32 KB of text), so the location's
//! `client_max_body_size` bounds what one request can cost.

use ngx::ffi::{ngx_http_request_t, ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR};

use super::body::{finish_after_body, read_body_then, request_body};
use super::ctx;
use super::headers::{add_response_header, request_header};
use super::respond::send_complete;
use super::usage_log::request_id;
use crate::core::error_shape::ErrorShape;
use crate::core::tokens::service::answer;

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const JSON: &[u8] = b"application/json";

/// The content handler.
pub unsafe extern "C" fn ngx_http_ai_gateway_token_service_handler(
    r: *mut ngx_http_request_t,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request in its content phase.
    unsafe { read_body_then(r, Some(body_handler)) }
}

unsafe extern "C" fn body_handler(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes a live request whose body has been read.
    unsafe { finish_after_body(r, respond) }
}

unsafe fn respond(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: r is live and its body was read.
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
        let reply = match &reply.error {
            Some(_) => {
                let version = request_header(&*r, b"anthropic-version").is_some();
                let shape = ErrorShape::of_request((*r).uri.as_bytes(), version);
                let Some(ctx) = ctx::get_or_create(r) else {
                    return SERVER_ERROR;
                };
                let id = request_id(ctx);
                let id = std::str::from_utf8(&id).unwrap_or("");
                if !add_response_header(r, shape.request_id_header(), id) {
                    return SERVER_ERROR;
                }
                reply.shaped(shape, id)
            }
            None => reply,
        };
        send_complete(r, reply.status as usize, JSON, &reply.body)
    }
}
