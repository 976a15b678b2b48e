//! A counting policy's cluster settings (`mode`, `on_failure`, `fail_open_fraction`) and the
//! node's defaults for them (`ai_gateway_cluster_limits`): where its counters live and what
//! it does while Redis cannot be reached (see `core::cluster`).

use serde_json::Value;

use crate::core::config_error::ConfigError;
use crate::core::fields::{at, err, string, Object};

/// Where a counting policy's counters live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Exact,
    Approximate,
}

/// What a cluster policy does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Limit on this node alone, at a fraction of the limit.
    Open,
    /// Refuse with 503 and `Retry-After`.
    Closed,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Open => "fail_open",
            OnFailure::Closed => "fail_closed",
        }
    }
}

/// Per-mille of a limit a node allows itself while degraded (`fail_open_fraction` × 1000).
pub type Fraction = u32;

/// A policy's own cluster settings (`mode`, `on_failure`, `fail_open_fraction`); what it
/// leaves out comes from the node's [`Defaults`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCluster {
    pub mode: Option<Mode>,
    pub on_failure: Option<OnFailure>,
    pub fraction: Option<Fraction>,
}

/// The node's defaults for counting policies (`ai_gateway_cluster_limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub mode: Mode,
    pub on_failure: OnFailure,
    pub fraction: Fraction,
    /// `Node::stale_ms`.
    pub stale_ms: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            mode: Mode::Exact,
            on_failure: OnFailure::Open,
            fraction: 500,
            stale_ms: 1000,
        }
    }
}

/// How a cluster policy behaves on this node, its settings resolved against the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    pub on_failure: OnFailure,
    pub fraction: Fraction,
    /// The counter is approximate (in the zone, synced), not taken in Redis per request.
    pub approximate: bool,
    /// How old an approximate counter's last sync may be (`Node::stale_ms`).
    pub stale_ms: u64,
}

impl PolicyCluster {
    /// `Some` when the policy's counters live in Redis on a node with `defaults` (`None`:
    /// the node has no cluster limits, everything is local).
    /// `window`: the policy counts in a sliding window (only windows are approximate).
    pub fn resolve(&self, defaults: Option<&Defaults>, window: bool) -> Option<Remote> {
        let d = defaults?;
        let approximate = match self.mode.unwrap_or(d.mode) {
            Mode::Local => return None,
            Mode::Exact => false,
            Mode::Approximate => window,
        };
        Some(Remote {
            on_failure: self.on_failure.unwrap_or(d.on_failure),
            fraction: self.fraction.unwrap_or(d.fraction),
            approximate,
            stale_ms: d.stale_ms,
        })
    }
}

/// The policy fields this module reads.
pub const POLICY_FIELDS: [&str; 3] = ["mode", "on_failure", "fail_open_fraction"];

/// Parses `mode`, `on_failure` and `fail_open_fraction` of a counting policy.
pub fn parse_policy_cluster(obj: &Object, path: &str) -> Result<PolicyCluster, ConfigError> {
    let mode = match string(obj, path, "mode")? {
        None => None,
        Some(m) => match parse_mode(m) {
            Some(m) => Some(m),
            None => {
                return err(
                    &at(path, "mode"),
                    format!("must be \"local\", \"exact\" or \"approximate\", not \"{m}\""),
                )
            }
        },
    };
    let on_failure = match string(obj, path, "on_failure")? {
        None => None,
        Some(f) => match parse_on_failure(f) {
            Some(f) => Some(f),
            None => {
                return err(
                    &at(path, "on_failure"),
                    format!("must be \"fail_open\" or \"fail_closed\", not \"{f}\""),
                )
            }
        },
    };
    let fraction = match obj.get("fail_open_fraction") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64().and_then(fraction_of) {
            Some(f) => Some(f),
            None => {
                return err(
                    &at(path, "fail_open_fraction"),
                    "must be a number above 0 and at most 1",
                )
            }
        },
    };
    Ok(PolicyCluster {
        mode,
        on_failure,
        fraction,
    })
}

pub fn parse_mode(s: &str) -> Option<Mode> {
    match s {
        "local" => Some(Mode::Local),
        "exact" => Some(Mode::Exact),
        "approximate" => Some(Mode::Approximate),
        _ => None,
    }
}

pub fn parse_on_failure(s: &str) -> Option<OnFailure> {
    match s {
        "fail_open" => Some(OnFailure::Open),
        "fail_closed" => Some(OnFailure::Closed),
        _ => None,
    }
}

/// A fraction above 0 and at most 1, in per-mille (at least 1).
pub fn fraction_of(f: f64) -> Option<Fraction> {
    (f > 0.0 && f <= 1.0).then(|| ((f * 1000.0).round() as Fraction).max(1))
}

/// What a node allows itself of `limit` while degraded: at least 1 (a policy that allows
/// anything still lets a request through on each node), never more than the limit.
pub fn degraded_limit(limit: u64, fraction: Fraction) -> u64 {
    let scaled = (limit as u128 * fraction as u128 / 1000) as u64;
    scaled.clamp(1, limit.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<PolicyCluster, ConfigError> {
        parse_policy_cluster(v.as_object().unwrap(), "p")
    }

    #[test]
    fn policy_fields() {
        let c = parse(
            serde_json::json!({"mode": "exact", "on_failure": "fail_closed",
            "fail_open_fraction": 0.25}),
        )
        .unwrap();
        assert_eq!(c.mode, Some(Mode::Exact));
        assert_eq!(c.on_failure, Some(OnFailure::Closed));
        assert_eq!(c.fraction, Some(250));
        assert_eq!(
            parse(serde_json::json!({})).unwrap(),
            PolicyCluster::default()
        );
        for bad in [
            serde_json::json!({"mode": "approx"}),
            serde_json::json!({"mode": "Exact"}),
            serde_json::json!({"mode": 1}),
            serde_json::json!({"on_failure": "open"}),
            serde_json::json!({"fail_open_fraction": 0}),
            serde_json::json!({"fail_open_fraction": 1.5}),
            serde_json::json!({"fail_open_fraction": "0.5"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolution_against_the_node() {
        let d = Defaults::default();
        let none = PolicyCluster::default();
        assert_eq!(none.resolve(None, true), None);
        assert_eq!(
            none.resolve(Some(&d), true),
            Some(Remote {
                on_failure: OnFailure::Open,
                fraction: 500,
                approximate: false,
                stale_ms: 1000
            })
        );
        let local = PolicyCluster {
            mode: Some(Mode::Local),
            ..none
        };
        assert_eq!(local.resolve(Some(&d), true), None);
        let node_local = Defaults {
            mode: Mode::Local,
            ..d
        };
        assert_eq!(none.resolve(Some(&node_local), true), None);
        let own = PolicyCluster {
            mode: Some(Mode::Exact),
            on_failure: Some(OnFailure::Closed),
            fraction: Some(100),
        };
        assert_eq!(
            own.resolve(Some(&node_local), true),
            Some(Remote {
                on_failure: OnFailure::Closed,
                fraction: 100,
                approximate: false,
                stale_ms: 1000
            })
        );
        // approximate applies to windows; quotas and concurrency stay exact
        let approx = PolicyCluster {
            mode: Some(Mode::Approximate),
            ..none
        };
        assert!(approx.resolve(Some(&d), true).unwrap().approximate);
        assert!(!approx.resolve(Some(&d), false).unwrap().approximate);
    }

    #[test]
    fn degraded_limits() {
        assert_eq!(degraded_limit(100, 500), 50);
        assert_eq!(degraded_limit(3, 250), 1);
        assert_eq!(degraded_limit(1, 1), 1);
        assert_eq!(degraded_limit(100, 1000), 100);
        assert_eq!(degraded_limit(u64::MAX, 1000), u64::MAX);
    }
}
