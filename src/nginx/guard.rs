//! No panic may cross into nginx: every `extern "C"` entry point runs its body through
//! [`guard`], which turns a panic into an `[alert]` and a fallback value.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ngx::ffi::{ngx_log_t, NGX_LOG_ALERT};

/// Runs `f`, returning `fallback` (and logging an alert) if it panics.
pub fn guard<T>(log: *mut ngx_log_t, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let log = if log.is_null() {
                ngx::log::ngx_cycle_log().as_ptr()
            } else {
                log
            };
            ngx::ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "ai_gateway: internal error (panic caught), request failed safely"
            );
            fallback
        }
    }
}
