//! The configuration of record as the config center holds it: what MySQL's tables store,
//! loaded whole for a write (the config head is locked, so writes are serialized), changed
//! by a pure operation, turned into the gateway document every node parses, and written
//! back as the rows that changed.
//!
//! It holds more than the document: disabled keys, display prefixes, times, ids. A
//! revision stores it next to its document, so a rollback restores exactly what was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default of `settings.unmatched_status`.
pub const DEFAULT_UNMATCHED_STATUS: u16 = 401;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct State {
    pub settings: Settings,
    /// By code.
    pub namespaces: BTreeMap<String, Namespace>,
    /// By name.
    pub targets: BTreeMap<String, Target>,
    /// In routing order.
    pub routes: Vec<Route>,
    /// The next id of a matcher or policy.
    pub next_id: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Settings {
    pub unmatched_status: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unmatched_status: DEFAULT_UNMATCHED_STATUS,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Namespace {
    pub code: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// By key id (the first 12 hex digits of the key's sha256, as in the gateway's logs).
    pub keys: BTreeMap<String, Key>,
    /// In evaluation order within the namespace (the data plane orders all matchers by
    /// priority, then by namespace, then by this order).
    pub matchers: Vec<Item>,
    pub policies: Vec<Item>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Key {
    pub id: String,
    pub name: Option<String>,
    /// Hex sha256 of the key (never the key).
    pub sha256: String,
    /// The first characters of a generated key, to recognise it (`sk-gw-AbCd`).
    pub prefix: Option<String>,
    pub enabled: bool,
    /// Unix ms after which the key stops working on every node.
    pub expires_at: Option<i64>,
    /// The key that replaced this one (a rotation).
    pub rotated_to: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A matcher or a policy: its object in the gateway document's format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Item {
    pub id: u64,
    pub spec: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    /// The target's object in the document's format, without `name` and `credential`.
    pub spec: Map<String, Value>,
    pub credential: Option<StoredCredential>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A provider credential as stored: never the plain key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredCredential {
    /// Sealed with the config center's secret key (`core::seal`); `last4` are the key's
    /// last four characters, to recognise it.
    Sealed { sealed: String, last4: String },
    /// An environment variable of every node.
    Env { name: String },
    /// A file on every node.
    File { path: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Route {
    pub name: String,
    /// The route's object in the document's format, without `name`.
    pub spec: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl State {
    pub fn namespace(&self, code: &str) -> Option<&Namespace> {
        self.namespaces.get(code)
    }

    /// The namespace and key a key id or hash belongs to.
    pub fn key_by_sha(&self, sha256: &str) -> Option<(&Namespace, &Key)> {
        self.namespaces.values().find_map(|ns| {
            ns.keys
                .values()
                .find(|k| k.sha256 == sha256)
                .map(|k| (ns, k))
        })
    }

    /// Whether a key id is taken in any namespace.
    pub fn key_id_taken(&self, id: &str) -> bool {
        self.namespaces.values().any(|ns| ns.keys.contains_key(id))
    }

    /// A fresh id for a matcher or policy.
    pub fn take_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }

    /// Routes that name target `name` (in `targets` or `fallback`).
    pub fn routes_using_target(&self, name: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| {
                let names = |key: &str| -> Vec<String> {
                    r.spec
                        .get(key)
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| match t {
                                    Value::String(s) => Some(s.clone()),
                                    Value::Object(o) => {
                                        o.get("target").and_then(Value::as_str).map(str::to_string)
                                    }
                                    _ => None,
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                names("targets")
                    .iter()
                    .chain(names("fallback").iter())
                    .any(|t| t == name)
            })
            .map(|r| r.name.clone())
            .collect()
    }

    /// Routes that name namespace `code`.
    pub fn routes_using_namespace(&self, code: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| {
                r.spec
                    .get("namespaces")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(code)))
            })
            .map(|r| r.name.clone())
            .collect()
    }
}

/// The key id of a hex sha256: its first 12 digits (what `$ai_gateway_key_id` and the logs
/// show).
pub fn key_id(sha256_hex: &str) -> String {
    sha256_hex.chars().take(12).collect()
}
