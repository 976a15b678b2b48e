//! The pure-Rust core: no nginx types, no `unsafe`, no IO. Everything here is exercised by
//! `cargo test` without nginx; the `nginx` layer converts nginx data into these types, calls
//! the core and maps the result back.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod identify;
pub mod matcher;
pub mod mock;
pub mod request;
