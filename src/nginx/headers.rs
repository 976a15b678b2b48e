//! Reading and removing request headers.

use std::borrow::Cow;

use ngx::ffi::{
    ngx_http_request_t, ngx_list_part_t, ngx_list_push, ngx_list_t, ngx_palloc, ngx_pnalloc,
    ngx_pool_t, ngx_str_t, ngx_table_elt_t,
};

use crate::core::matcher::find_query_arg;
use crate::core::pipeline::Incoming;

/// Client headers in this family belong to the gateway and are removed before proxying.
pub const GATEWAY_HEADER_PREFIX: &[u8] = b"x-ai-gateway-";

/// Whether a client request header is not passed upstream: the gateway's own headers, and
/// `Accept-Encoding` (the provider then answers uncompressed, so the gateway can read the
/// usage in the response; nginx's gzip filter still compresses for the client, as it reads
/// the client's header, which stays in place).
pub fn is_dropped_header(key: &[u8]) -> bool {
    let p = GATEWAY_HEADER_PREFIX;
    (key.len() >= p.len() && key[..p.len()].eq_ignore_ascii_case(p))
        || key.eq_ignore_ascii_case(b"accept-encoding")
}

/// Calls `f` with every header of `list` until it returns `Some`.
///
/// # Safety
/// `list` must be an initialised list of `ngx_table_elt_t`.
pub unsafe fn find_header<'a, T>(
    list: &'a ngx_list_t,
    mut f: impl FnMut(&'a ngx_table_elt_t) -> Option<T>,
) -> Option<T> {
    let mut part: *const ngx_list_part_t = &list.part;
    // SAFETY: standard nginx list walk; parts and elements stay valid for the request.
    unsafe {
        while !part.is_null() {
            let elts = (*part).elts as *const ngx_table_elt_t;
            for i in 0..(*part).nelts {
                if let Some(v) = f(&*elts.add(i)) {
                    return Some(v);
                }
            }
            part = (*part).next;
        }
    }
    None
}

/// The value of the first request header named `name` (case-insensitive).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn request_header<'a>(r: &'a ngx_http_request_t, name: &[u8]) -> Option<&'a [u8]> {
    // SAFETY: headers_in.headers is initialised for every request that reached a phase.
    unsafe {
        find_header(&r.headers_in.headers, |h| {
            (h.key.as_bytes().eq_ignore_ascii_case(name)).then(|| h.value.as_bytes())
        })
    }
}

/// Removes every request header whose name `dropped` says, keeping all
/// other elements at their addresses: nginx keeps pointers to list elements
/// (`headers_in.host`, `.authorization`, ...), so nothing is moved.
///
/// The list is rebuilt as a chain of parts over the runs of kept elements. Two nginx rules
/// shape it: list walkers assume every part after the first is non-empty, and
/// `ngx_list_push` appends to `last` until it holds `nalloc` elements, so `nalloc` is reduced
/// to the room actually left after the last run (the rest of its original allocation; later
/// parts are then allocated with that size, which is harmless).
///
/// Returns the number of headers removed, or `None` if the pool is exhausted.
///
/// # Safety
/// `list` must be a live, unmodified nginx list of `ngx_table_elt_t` allocated from `pool`.
pub unsafe fn remove_headers(
    list: &mut ngx_list_t,
    pool: *mut ngx_pool_t,
    dropped: impl Fn(&[u8]) -> bool,
) -> Option<usize> {
    let matches = |h: &ngx_table_elt_t| dropped(h.key.as_bytes());
    // SAFETY: list walk as in find_header; new parts come from the request pool and live as
    // long as the list; element memory is never freed or moved.
    unsafe {
        if find_header(list, |h| matches(h).then_some(())).is_none() {
            return Some(0);
        }

        /// A run of kept elements and the end of the allocation it lies in.
        struct Run {
            start: *mut ngx_table_elt_t,
            len: usize,
            alloc_end: *mut ngx_table_elt_t,
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut removed = 0;
        let first_elts = list.part.elts as *mut ngx_table_elt_t;
        let mut part: *mut ngx_list_part_t = &mut list.part;
        while !part.is_null() {
            let elts = (*part).elts as *mut ngx_table_elt_t;
            let n = (*part).nelts;
            // the last part has room for nalloc elements; the others are full
            let room = if part == list.last { list.nalloc } else { n };
            let alloc_end = elts.add(room);
            let mut i = 0;
            while i < n {
                if matches(&*elts.add(i)) {
                    removed += 1;
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && !matches(&*elts.add(i)) {
                    i += 1;
                }
                runs.push(Run {
                    start: elts.add(start),
                    len: i - start,
                    alloc_end,
                });
            }
            part = (*part).next;
        }

        let mut runs = runs.into_iter();
        match runs.next() {
            Some(first) => {
                list.part.elts = first.start.cast();
                list.part.nelts = first.len;
                list.part.next = std::ptr::null_mut();
                list.last = &mut list.part;
                list.nalloc = first.alloc_end.offset_from(first.start) as usize;
            }
            None => {
                list.part.elts = first_elts.cast();
                list.part.nelts = 0;
                list.part.next = std::ptr::null_mut();
                list.last = &mut list.part;
                return Some(removed);
            }
        }
        for run in runs {
            let p =
                ngx_palloc(pool, std::mem::size_of::<ngx_list_part_t>()) as *mut ngx_list_part_t;
            if p.is_null() {
                return None;
            }
            p.write(ngx_list_part_t {
                elts: run.start.cast(),
                nelts: run.len,
                next: std::ptr::null_mut(),
            });
            (*list.last).next = p;
            list.last = p;
            list.nalloc = run.alloc_end.offset_from(run.start) as usize;
        }
        Some(removed)
    }
}

/// The headers and query arguments of a live nginx request, for the pipeline's matchers.
pub struct NgxIncoming<'a> {
    pub r: &'a ngx_http_request_t,
}

impl Incoming for NgxIncoming<'_> {
    fn header(&self, lowercase_name: &str) -> Option<Cow<'_, str>> {
        // SAFETY: self.r is a live request for the lifetime of the view.
        unsafe { request_header(self.r, lowercase_name.as_bytes()) }.map(String::from_utf8_lossy)
    }

    fn query_arg(&self, name: &str) -> Option<Cow<'_, str>> {
        find_query_arg(self.r.args.as_bytes(), name)
    }
}

/// Adds a response header (copied into the request pool). False when memory runs out.
///
/// # Safety
/// `r` must be a live request whose response header has not been sent.
pub unsafe fn add_response_header(r: *mut ngx_http_request_t, name: &str, value: &str) -> bool {
    // SAFETY: ngx_list_push returns an element of the request's header list (uninitialised:
    // zeroed first, which also covers fields that differ between nginx versions); names and
    // values are copied into the request pool, which outlives the response.
    unsafe {
        let pool = (*r).pool;
        let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
        if h.is_null() {
            return false;
        }
        std::ptr::write_bytes(h, 0, 1);
        let copy = |s: &str| -> Option<ngx_str_t> {
            let p = ngx_pnalloc(pool, s.len().max(1)) as *mut u8;
            if p.is_null() {
                return None;
            }
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            Some(ngx_str_t {
                len: s.len(),
                data: p,
            })
        };
        let (Some(key), Some(val)) = (copy(name), copy(value)) else {
            return false;
        };
        (*h).hash = 1;
        (*h).key = key;
        (*h).value = val;
        true
    }
}

/// Hides response headers whose name `matches` (hash 0: nginx's header filter skips them).
///
/// # Safety
/// `r` must be a live request whose response header has not been sent.
pub unsafe fn remove_response_headers(r: *mut ngx_http_request_t, matches: impl Fn(&[u8]) -> bool) {
    // SAFETY: list walk over the request's own output headers.
    unsafe {
        let mut part: *mut ngx_list_part_t = &mut (*r).headers_out.headers.part;
        while !part.is_null() {
            let elts = (*part).elts as *mut ngx_table_elt_t;
            for i in 0..(*part).nelts {
                let h = &mut *elts.add(i);
                if h.hash != 0 && matches(h.key.as_bytes()) {
                    h.hash = 0;
                }
            }
            part = (*part).next;
        }
    }
}
