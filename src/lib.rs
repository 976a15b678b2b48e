//! `ngx_http_ai_gateway_module`: an AI gateway inside nginx.
//!
//! `core` is pure Rust (config, matching, request parsing, errors, the mock provider) and is
//! what `cargo test` exercises. `nginx` is the thin FFI layer: directives, phase handlers,
//! filters and variables; it is left out of unit-test builds, which have no nginx to link,
//! and of builds without the `module` feature (the benches).

#[forbid(unsafe_code)]
pub mod core;

#[cfg(feature = "module")]
#[forbid(unsafe_code)]
pub mod runtime;

#[cfg(all(feature = "module", not(test)))]
mod nginx;
