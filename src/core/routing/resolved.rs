//! A target as the workers use it: its addresses, and the headers and values that do not
//! change from one request to the next. Made once per snapshot (resolving a host and reading
//! a credential are IO, done by `crate::runtime::load`, never on a request).

use std::net::SocketAddr;

use super::{credential_headers, Target};

pub struct ResolvedTarget {
    pub addrs: Vec<SocketAddr>,
    /// The credential headers in the provider's form (hold the key: never logged).
    pub credential_headers: Vec<(&'static str, String)>,
    /// `anthropic-version` when the client sends none (Anthropic targets).
    pub default_anthropic_version: Option<String>,
    pub host_header: String,
}

impl ResolvedTarget {
    /// `target` at `addrs`, carrying `secret` (its credential, already read).
    pub fn new(target: &Target, addrs: Vec<SocketAddr>, secret: Option<&str>) -> ResolvedTarget {
        let default_anthropic_version = credential_headers(target, None, false)
            .into_iter()
            .find(|(n, _)| *n == "anthropic-version")
            .map(|(_, v)| v);
        ResolvedTarget {
            addrs,
            credential_headers: credential_headers(target, secret, true),
            default_anthropic_version,
            host_header: target.host_header(),
        }
    }

    /// The value of one of the credential headers (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.credential_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for ResolvedTarget {
    // the credential headers hold keys: never printed
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("addrs", &self.addrs)
            .field("host_header", &self.host_header)
            .finish_non_exhaustive()
    }
}
