//! Reading and removing request headers.

use std::borrow::Cow;

use ngx::ffi::{
    ngx_http_request_t, ngx_list_part_t, ngx_list_t, ngx_palloc, ngx_pool_t, ngx_table_elt_t,
};
use serde_json::Value;

use crate::core::matcher::{find_query_arg, RequestView};

/// Client headers in this family belong to the gateway and are removed before proxying.
pub const GATEWAY_HEADER_PREFIX: &[u8] = b"x-ai-gateway-";

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

/// Removes every request header whose name starts with `prefix` (lower-case), keeping all
/// other elements at their addresses: nginx keeps pointers to list elements
/// (`headers_in.host`, `.authorization`, ...), so nothing is moved. A removed element is cut
/// out by shortening or splitting its part, and the list gets a fresh empty last part so that
/// later `ngx_list_push` calls never write into a part that was shortened.
///
/// Returns the number of headers removed, or `None` if the pool is exhausted.
///
/// # Safety
/// `list` must be a live header list allocated from `pool`.
pub unsafe fn remove_headers_with_prefix(
    list: &mut ngx_list_t,
    pool: *mut ngx_pool_t,
    prefix: &[u8],
) -> Option<usize> {
    let matches = |h: &ngx_table_elt_t| {
        let key = h.key.as_bytes();
        key.len() >= prefix.len() && key[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    // SAFETY: list walk as in find_header; new parts come from the request pool and live as
    // long as the list. Element memory is never freed or moved.
    unsafe {
        if find_header(list, |h| matches(h).then_some(())).is_none() {
            return Some(0);
        }
        let tail = ngx_palloc(pool, std::mem::size_of::<ngx_list_part_t>()) as *mut ngx_list_part_t;
        let tail_elts = ngx_palloc(pool, list.size * list.nalloc);
        if tail.is_null() || tail_elts.is_null() {
            return None;
        }
        tail.write(ngx_list_part_t {
            elts: tail_elts,
            nelts: 0,
            next: std::ptr::null_mut(),
        });
        (*list.last).next = tail;
        list.last = tail;

        let mut removed = 0;
        let mut part: *mut ngx_list_part_t = &mut list.part;
        while !part.is_null() {
            let mut i = 0;
            while i < (*part).nelts {
                let elts = (*part).elts as *mut ngx_table_elt_t;
                if !matches(&*elts.add(i)) {
                    i += 1;
                    continue;
                }
                removed += 1;
                if i == 0 {
                    (*part).elts = elts.add(1).cast();
                    (*part).nelts -= 1;
                } else if i + 1 == (*part).nelts {
                    (*part).nelts -= 1;
                } else {
                    let rest = ngx_palloc(pool, std::mem::size_of::<ngx_list_part_t>())
                        as *mut ngx_list_part_t;
                    if rest.is_null() {
                        return None;
                    }
                    rest.write(ngx_list_part_t {
                        elts: elts.add(i + 1).cast(),
                        nelts: (*part).nelts - i - 1,
                        next: (*part).next,
                    });
                    (*part).nelts = i;
                    (*part).next = rest;
                }
            }
            part = (*part).next;
        }
        Some(removed)
    }
}

/// A [`RequestView`] over a live nginx request.
pub struct NgxRequestView<'a> {
    pub r: &'a ngx_http_request_t,
    pub body: Option<&'a Value>,
}

impl RequestView for NgxRequestView<'_> {
    fn header(&self, lowercase_name: &str) -> Option<Cow<'_, str>> {
        // SAFETY: self.r is a live request for the lifetime of the view.
        unsafe { request_header(self.r, lowercase_name.as_bytes()) }.map(String::from_utf8_lossy)
    }

    fn query_arg(&self, name: &str) -> Option<Cow<'_, str>> {
        find_query_arg(self.r.args.as_bytes(), name)
    }

    fn body(&self) -> Option<&Value> {
        self.body
    }
}
