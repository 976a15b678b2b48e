//! The whole gateway configuration a request is served with: one immutable, validated value
//! (namespaces, keys, matchers, policies, targets with their addresses and credentials,
//! routes) behind one `Arc`. A request takes the current snapshot once, at its start, and
//! keeps it to its end (failover included); a new snapshot replaces the current one for the
//! requests that start after it.
//!
//! Per-worker state that must outlive a snapshot (rotations, in-flight counts) is kept
//! outside it, by name (`routing::worker`); shared-memory counters are keyed by what
//! defines them (`policy::engine`), so they survive a snapshot that did not change them.

pub mod head;

use super::config::GatewayConfig;
use super::routing::resolved::ResolvedTarget;

/// Where a snapshot came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `ai_gateway_config` file.
    File,
    /// The last-known-good file of the Redis source (read at start).
    LastKnownGood,
    /// Published in Redis.
    Redis,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::LastKnownGood => "lkg",
            Source::Redis => "redis",
        }
    }
}

/// What identifies a snapshot: its store version and epoch (0 and "" for the file) and the
/// sha256 of its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub source: Source,
    pub version: u64,
    pub epoch: String,
    /// Hex sha256 of the JSON document.
    pub sha256: String,
}

pub struct Snapshot {
    pub config: GatewayConfig,
    /// The config's targets, resolved, by target index.
    pub targets: Vec<ResolvedTarget>,
    pub origin: Origin,
}

impl Snapshot {
    /// The label operators know the snapshot by: its store version, else the document's
    /// own `version`, else "".
    pub fn label(&self) -> String {
        if self.origin.version > 0 {
            self.origin.version.to_string()
        } else {
            self.config.version.clone().unwrap_or_default()
        }
    }

    /// Whether the snapshot can be served by an nginx configuration with (or without) a
    /// limit zone and with (or without) `ai_gateway_route on` somewhere: counting policies
    /// need the zone, routed locations need routes.
    pub fn fits(&self, has_limit_zone: bool, route_anywhere: bool) -> Result<(), String> {
        if !has_limit_zone && self.config.has_counters() {
            return Err("the gateway config has counting policies (requests, tokens, quota, concurrency) but no \"ai_gateway_limit_zone\" is set in the http block".into());
        }
        if route_anywhere && self.config.routing.is_empty() {
            return Err(
                "\"ai_gateway_route\" is on but the gateway config has no \"routes\"".into(),
            );
        }
        Ok(())
    }

    /// The code of namespace `index`.
    pub fn namespace_code(&self, index: usize) -> Option<&str> {
        self.config.namespaces.get(index).map(|n| n.code.as_str())
    }
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
