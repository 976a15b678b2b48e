//! The client request body as bytes, wherever nginx keeps it.

use std::borrow::Cow;

use ngx::ffi::{ngx_buf_t, ngx_http_request_t, ngx_read_file};

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
        let mut out = Vec::new();
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
