//! The config center's admin API, as pure logic: its URLs and roles, the configuration of
//! record ([`state::State`]) and the writes on it, the gateway document made from it,
//! views, ETags, pagination, diffs, and errors with JSON paths. The runtime
//! (`crate::runtime::admin`) does the IO (MySQL, Redis, password hashing) around it; the
//! nginx layer only carries requests in and answers out.

pub mod auth;
pub mod clock;
pub mod diff;
pub mod document;
pub mod endpoint;
pub mod error;
pub mod ops;
pub mod query;
pub mod resource;
pub mod state;
pub mod tables;
pub mod views;

/// A sealer with a fixed key and nonce (the same text seals the same way), for tests.
#[cfg(test)]
pub(crate) fn test_seal(plaintext: &str) -> Result<String, String> {
    crate::core::seal::SealKey::from_bytes([7; 32]).seal(plaintext, [1; 12])
}
