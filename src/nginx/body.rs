//! The client request body as bytes, wherever nginx keeps it.

use std::borrow::Cow;

use ngx::ffi::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_http_client_body_handler_pt, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_int_t, ngx_pcalloc, ngx_pnalloc,
    ngx_read_file, NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SPECIAL_RESPONSE,
};

/// The request body nginx has read, borrowed when it is one in-memory buffer, otherwise
/// copied (several buffers, or a body spilled to a temporary file larger than
/// `client_body_buffer_size`; the file was just written by nginx and is read back with
/// `pread`, normally from the page cache).
///
/// # Safety
/// `r` must be a live request whose body reading has completed.
pub unsafe fn request_body<'a>(r: &'a ngx_http_request_t) -> Result<Cow<'a, [u8]>, String> {
    // SAFETY: after ngx_http_read_client_request_body completes, request_body->bufs is a valid
    // chain of memory and/or file buffers that lives as long as the request.
    unsafe {
        let rb = r.request_body;
        if rb.is_null() || (*rb).bufs.is_null() {
            return Ok(Cow::Borrowed(&[]));
        }
        let first = (*rb).bufs;
        if (*first).next.is_null() && (*(*first).buf).in_file() == 0 {
            return Ok(Cow::Borrowed(memory_bytes(&*(*first).buf)));
        }
        let mut total = 0usize;
        let mut cl = first;
        while !cl.is_null() {
            let b = &*(*cl).buf;
            total += if b.in_file() != 0 {
                (b.file_last - b.file_pos).max(0) as usize
            } else {
                memory_bytes(b).len()
            };
            cl = (*cl).next;
        }
        let mut out = Vec::with_capacity(total);
        let mut cl = first;
        while !cl.is_null() {
            let b = &*(*cl).buf;
            if b.in_file() != 0 {
                read_file_part(b, &mut out)?;
            } else {
                out.extend_from_slice(memory_bytes(b));
            }
            cl = (*cl).next;
        }
        Ok(Cow::Owned(out))
    }
}

/// # Safety
/// `b` must be a valid in-memory buffer.
unsafe fn memory_bytes(b: &ngx_buf_t) -> &[u8] {
    if b.pos.is_null() || b.last <= b.pos {
        return &[];
    }
    // SAFETY: pos..last is the buffer's readable region.
    unsafe { std::slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize) }
}

/// # Safety
/// `b` must be a valid file buffer.
unsafe fn read_file_part(b: &ngx_buf_t, out: &mut Vec<u8>) -> Result<(), String> {
    let len = (b.file_last - b.file_pos).max(0) as usize;
    let start = out.len();
    out.resize(start + len, 0);
    let mut done = 0usize;
    while done < len {
        // SAFETY: b.file is the temp file nginx wrote the body into; the destination range is
        // inside `out`.
        let n = unsafe {
            ngx_read_file(
                b.file,
                out.as_mut_ptr().add(start + done),
                len - done,
                b.file_pos + done as i64,
            )
        };
        if n <= 0 {
            return Err(format!(
                "reading the request body temp file failed after {done} of {len} bytes"
            ));
        }
        done += n as usize;
    }
    Ok(())
}

/// Replaces the request body nginx will send upstream with `bytes` (copied into the request
/// pool), and its length (`Content-Length` upstream follows `content_length_n`). Returns false
/// when memory runs out.
///
/// # Safety
/// `r` must be a live request whose body reading has completed (before the content phase).
pub unsafe fn replace_request_body(r: *mut ngx_http_request_t, bytes: &[u8]) -> bool {
    // SAFETY: pool allocations; request_body and headers_in are the live request's.
    unsafe {
        let rb = (*r).request_body;
        if rb.is_null() {
            return false;
        }
        let pool = (*r).pool;
        let mem = ngx_pnalloc(pool, bytes.len().max(1)) as *mut u8;
        let b = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
        let cl = ngx_alloc_chain_link(pool);
        if mem.is_null() || b.is_null() || cl.is_null() {
            return false;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), mem, bytes.len());
        (*b).start = mem;
        (*b).pos = mem;
        (*b).last = mem.add(bytes.len());
        (*b).end = (*b).last;
        (*b).set_temporary(1);
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        (*cl).buf = b;
        (*cl).next = std::ptr::null_mut();
        (*rb).bufs = cl;
        (*r).headers_in.content_length_n = bytes.len() as i64;
        if let Some(h) = (*r).headers_in.content_length.as_mut() {
            let text = bytes.len().to_string();
            let p = ngx_pnalloc(pool, text.len()) as *mut u8;
            if p.is_null() {
                return false;
            }
            std::ptr::copy_nonoverlapping(text.as_ptr(), p, text.len());
            h.value.data = p;
            h.value.len = text.len();
        }
        true
    }
}

/// The first half of a content handler that needs the whole body (the token service, the
/// admin API): starts reading it; `on_body` runs once it is read (at once when it already
/// is) and ends with [`finish_after_body`].
///
/// # Safety
/// `r` must be a live request in its content phase.
pub unsafe fn read_body_then(
    r: *mut ngx_http_request_t,
    on_body: ngx_http_client_body_handler_pt,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request.
    let log = unsafe { (*(*r).connection).log };
    super::guard::guard(log, SERVER_ERROR, || unsafe {
        let rc = ngx_http_read_client_request_body(r, on_body);
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        NGX_DONE as ngx_int_t
    })
}

/// The second half, in the body handler: runs `respond` (under the panic guard) and
/// finalizes the request with what it returns, which balances the reference the body reader
/// took (a request `respond` parks on the bridge holds its own).
///
/// # Safety
/// `r` must be a live request whose body has been read.
pub unsafe fn finish_after_body(
    r: *mut ngx_http_request_t,
    respond: unsafe fn(*mut ngx_http_request_t) -> ngx_int_t,
) {
    // SAFETY: nginx passed a live request to the body handler.
    let log = unsafe { (*(*r).connection).log };
    let rc = super::guard::guard(log, SERVER_ERROR, || unsafe { respond(r) });
    // SAFETY: as above.
    unsafe { ngx_http_finalize_request(r, rc) };
}

const SERVER_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
