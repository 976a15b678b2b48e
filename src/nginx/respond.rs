//! Sending a complete response the module built itself (metrics exposition, token service).

use ngx::ffi::{
    ngx_http_discard_request_body, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_pnalloc, ngx_str_t, NGX_ERROR, NGX_HTTP_GET,
    NGX_HTTP_HEAD, NGX_HTTP_NOT_ALLOWED, NGX_OK,
};

/// For the module's read-only handlers (metrics, config status): GET and HEAD only (else
/// `Err(405)`), the request body discarded (`Err` with nginx's code when that fails).
///
/// # Safety
/// `r` must be a live request in its content phase.
pub unsafe fn read_only(r: *mut ngx_http_request_t) -> Result<(), ngx_int_t> {
    // SAFETY: as the caller's.
    unsafe {
        if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
            return Err(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
        }
        let rc = ngx_http_discard_request_body(r);
        if rc != NGX_OK as ngx_int_t {
            return Err(rc);
        }
    }
    Ok(())
}

use super::filter::memory_chain;

/// Sends `status`, `content_type` (a static string) and `body` (copied into the request
/// pool); returns what nginx's header/output filters return.
///
/// # Safety
/// `r` must be a live request in its content phase.
pub unsafe fn send_complete(
    r: *mut ngx_http_request_t,
    status: usize,
    content_type: &'static [u8],
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: r is live; the body is copied into its pool before it is sent, and the content
    // type is static.
    unsafe {
        let out = &mut (*r).headers_out;
        out.status = status;
        out.content_length_n = body.len() as i64;
        out.content_type = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr().cast_mut(),
        };
        out.content_type_len = content_type.len();
        out.content_type_lowcase = std::ptr::null_mut();
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        let p = ngx_pnalloc((*r).pool, body.len().max(1)) as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        std::ptr::copy_nonoverlapping(body.as_ptr(), p, body.len());
        let Some(chain) = memory_chain(r, std::slice::from_raw_parts(p, body.len()), true) else {
            return NGX_ERROR as ngx_int_t;
        };
        ngx_http_output_filter(r, chain)
    }
}
