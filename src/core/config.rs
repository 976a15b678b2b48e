//! The gateway's JSON configuration: model, parsing and validation.
//!
//! Validation reports the JSON path of the first bad field, e.g.
//! `namespaces[2].matchers[0].operator: unknown operator "like"`, so `nginx -t` can point an
//! operator straight at the mistake. Unknown fields are errors (typos must not pass silently).
//!
//! ```json
//! {
//!   "version": "2026-11-22.1",
//!   "unmatched_status": 401,
//!   "namespaces": [
//!     {
//!       "code": "team-a",
//!       "name": "Team A",
//!       "status": "enabled",
//!       "api_keys": [ {"name": "ci", "sha256": "<64 hex>", "expires_at": "2026-12-31T00:00:00Z"},
//!                     "<64 hex>" ],
//!       "matchers": [
//!         {"type": "header", "field": "X-Team", "operator": "equals", "value": "a", "priority": 10}
//!       ]
//!     }
//!   ]
//! }
//! ```

use std::collections::HashMap;

use serde_json::Value;

pub use super::config_error::ConfigError;
use super::fields::{array, at, err, header_text, known, object, required, string};
use super::matcher::{Matcher, Operator, Source};
use super::policy::rules::{parse_policies, Policy};
use super::routing::{parse_routing, Routing};
use super::timestamp::parse_time_ms;

/// Priority of a matcher that does not set one (the original design's default).
pub const DEFAULT_PRIORITY: i64 = 100;

/// A validated configuration, ready for lookups.
#[derive(Debug)]
pub struct GatewayConfig {
    pub version: Option<String>,
    /// Status when nothing identifies a request: 401 (default) or 404 (the original gateway).
    pub unmatched_status: u16,
    pub namespaces: Vec<Namespace>,
    /// sha256(key) -> namespace index and expiry.
    keys: HashMap<[u8; 32], KeyRef>,
    /// Every namespace's matchers, in evaluation order: priority ascending, then namespace
    /// declaration order, then matcher declaration order.
    matchers: Vec<Matcher>,
    /// Provider targets and the routes to them (empty: the location's own `proxy_pass`).
    pub routing: Routing,
}

/// A tenant.
#[derive(Debug)]
pub struct Namespace {
    pub code: String,
    pub name: String,
    pub enabled: bool,
    /// In evaluation order (see `core::policy::engine`).
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, Copy)]
pub struct KeyRef {
    pub namespace: usize,
    /// Unix milliseconds from which the key no longer identifies anything (`expires_at`).
    pub expires_ms: Option<u64>,
}

impl KeyRef {
    /// Whether the key still identifies its namespace at `now_ms` (unix milliseconds): a key
    /// whose expiry is at or before now is as unknown.
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        !matches!(self.expires_ms, Some(expiry) if expiry <= now_ms)
    }
}

impl GatewayConfig {
    /// Parses and validates a JSON document (a key twice in one object is an error).
    pub fn from_json(text: &[u8]) -> Result<Self, ConfigError> {
        let root = super::strict_json::parse(text)?;
        Self::from_value(&root)
    }

    /// Validates an already parsed document.
    pub fn from_value(root: &Value) -> Result<Self, ConfigError> {
        let obj = object(root, "")?;
        known(
            obj,
            "",
            &[
                "version",
                "unmatched_status",
                "namespaces",
                "targets",
                "routes",
            ],
        )?;

        let version = match obj.get("version") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return err("version", "must be a string or a number"),
        };
        let unmatched_status = match obj.get("unmatched_status") {
            None => 401,
            Some(v) => match v.as_u64() {
                Some(401) => 401,
                Some(404) => 404,
                _ => return err("unmatched_status", "must be 401 or 404"),
            },
        };

        let mut cfg = GatewayConfig {
            version,
            unmatched_status,
            namespaces: Vec::new(),
            keys: HashMap::new(),
            matchers: Vec::new(),
            routing: Routing::default(),
        };
        let list = match obj.get("namespaces") {
            None => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return err("namespaces", "must be an array"),
        };
        let mut codes: HashMap<String, usize> = HashMap::new();
        // (priority, namespace, matcher) sort key alongside each matcher
        let mut ordered: Vec<((i64, usize, usize), Matcher)> = Vec::new();

        for (i, ns) in list.iter().enumerate() {
            let path = format!("namespaces[{i}]");
            let ns_obj = object(ns, &path)?;
            known(
                ns_obj,
                &path,
                &[
                    "code",
                    "name",
                    "description",
                    "status",
                    "api_keys",
                    "matchers",
                    "policies",
                ],
            )?;
            let code = required(ns_obj, &path, "code")?;
            validate_code(code, &format!("{path}.code"))?;
            if let Some(prev) = codes.insert(code.to_string(), i) {
                return err(
                    &format!("{path}.code"),
                    format!("duplicate namespace code \"{code}\" (also namespaces[{prev}])"),
                );
            }
            let name = string(ns_obj, &path, "name")?.unwrap_or(code);
            header_text(name, &format!("{path}.name"))?;
            string(ns_obj, &path, "description")?;
            let enabled = match string(ns_obj, &path, "status")? {
                None | Some("enabled") => true,
                Some("disabled") => false,
                Some(other) => {
                    return err(
                        &format!("{path}.status"),
                        format!("must be \"enabled\" or \"disabled\", not \"{other}\""),
                    )
                }
            };

            for (k, key) in array(ns_obj, &path, "api_keys")?.iter().enumerate() {
                let kpath = format!("{path}.api_keys[{k}]");
                let (hash, expires_ms) = parse_key(key, &kpath)?;
                if let Some(other) = cfg.keys.get(&hash) {
                    return err(
                        &kpath,
                        format!(
                            "duplicate key hash (already used by namespace \"{}\")",
                            cfg.namespaces
                                .get(other.namespace)
                                .map_or(code, |n: &Namespace| n.code.as_str())
                        ),
                    );
                }
                cfg.keys.insert(
                    hash,
                    KeyRef {
                        namespace: i,
                        expires_ms,
                    },
                );
            }

            for (m, matcher) in array(ns_obj, &path, "matchers")?.iter().enumerate() {
                let mpath = format!("{path}.matchers[{m}]");
                let compiled = parse_matcher(matcher, &mpath, i)?;
                ordered.push(((compiled.priority, i, m), compiled));
            }

            let policies = parse_policies(
                array(ns_obj, &path, "policies")?,
                &format!("{path}.policies"),
            )?;

            cfg.namespaces.push(Namespace {
                code: code.to_string(),
                name: name.to_string(),
                enabled,
                policies,
            });
        }

        ordered.sort_by_key(|(k, _)| *k);
        cfg.matchers = ordered.into_iter().map(|(_, m)| m).collect();
        let codes: Vec<&str> = cfg.namespaces.iter().map(|n| n.code.as_str()).collect();
        cfg.routing = parse_routing(
            array(obj, "", "targets")?,
            array(obj, "", "routes")?,
            &codes,
        )?;
        Ok(cfg)
    }

    /// The namespace a key hash belongs to at `now_ms` (unix milliseconds); `None` for an
    /// unknown key and for one whose `expires_at` is at or before now.
    pub fn namespace_for_key(&self, hash: &[u8; 32], now_ms: u64) -> Option<usize> {
        self.keys
            .get(hash)
            .filter(|k| k.is_valid_at(now_ms))
            .map(|k| k.namespace)
    }

    /// The stored entry of a key hash, expired or not.
    pub fn key(&self, hash: &[u8; 32]) -> Option<KeyRef> {
        self.keys.get(hash).copied()
    }

    /// Matchers in evaluation order.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// Whether any namespace has a policy that keeps counters (and needs the limit zone).
    pub fn has_counters(&self) -> bool {
        self.namespaces
            .iter()
            .any(|n| n.policies.iter().any(|p| p.rule.is_counter()))
    }

    /// Number of policies of all namespaces.
    pub fn policy_count(&self) -> usize {
        self.namespaces.iter().map(|n| n.policies.len()).sum()
    }

    /// Number of stored key hashes.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// Codes become metric labels and log fields: keep them short and plain.
fn validate_code(code: &str, path: &str) -> Result<(), ConfigError> {
    if code.is_empty() || code.len() > 64 {
        return err(path, "must be 1 to 64 characters");
    }
    if !code
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return err(path, "may only contain letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// A key is either the hex sha256 string, or `{"sha256": "<hex>", "name": "...",
/// "expires_at": <RFC 3339 time or unix seconds>}`. The hash, and the expiry in unix ms.
fn parse_key(v: &Value, path: &str) -> Result<([u8; 32], Option<u64>), ConfigError> {
    let (hex, hex_path, expires_ms) = match v {
        Value::String(s) => (s.as_str(), path.to_string(), None),
        Value::Object(obj) => {
            known(obj, path, &["sha256", "name", "expires_at"])?;
            if let Some(name) = string(obj, path, "name")? {
                header_text(name, &at(path, "name"))?;
            }
            let expires_ms = match obj.get("expires_at") {
                None | Some(Value::Null) => None,
                Some(t) => Some(parse_time_ms(t).ok_or_else(|| {
                    ConfigError {
                        path: at(path, "expires_at"),
                        message:
                            "must be an RFC 3339 time (e.g. \"2026-12-31T00:00:00Z\") or unix \
                              seconds"
                                .to_string(),
                    }
                })?),
            };
            (
                required(obj, path, "sha256")?,
                at(path, "sha256"),
                expires_ms,
            )
        }
        _ => return err(path, "must be a sha256 hex string or an object"),
    };
    let hash = decode_sha256_hex(hex).ok_or_else(|| ConfigError {
        path: hex_path,
        message: "must be 64 hexadecimal characters (the sha256 of the key, never the key)"
            .to_string(),
    })?;
    Ok((hash, expires_ms))
}

fn decode_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn parse_matcher(v: &Value, path: &str, namespace: usize) -> Result<Matcher, ConfigError> {
    let obj = object(v, path)?;
    known(
        obj,
        path,
        &["type", "field", "operator", "value", "priority", "name"],
    )?;
    string(obj, path, "name")?;
    let kind = required(obj, path, "type")?;
    let field = required(obj, path, "field")?;
    if field.is_empty() {
        return err(&at(path, "field"), "must not be empty");
    }
    let source = match kind {
        "header" => Source::Header(field.to_ascii_lowercase()),
        "query" => Source::Query(field.to_string()),
        "body" => {
            let segs: Vec<String> = field.split('.').map(str::to_string).collect();
            if segs.iter().any(String::is_empty) {
                return err(&at(path, "field"), format!("invalid body path \"{field}\""));
            }
            Source::Body(segs)
        }
        other => {
            return err(
                &at(path, "type"),
                format!("unknown matcher type \"{other}\" (expected header, query or body)"),
            )
        }
    };
    let value = match obj.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return err(&at(path, "value"), "must be a string"),
        None => return err(&at(path, "value"), "is required"),
    };
    let op_name = required(obj, path, "operator")?;
    let operator = Operator::parse(op_name, &value).map_err(|message| match op_name {
        "regex" => ConfigError {
            path: at(path, "value"),
            message,
        },
        _ => ConfigError {
            path: at(path, "operator"),
            message,
        },
    })?;
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => DEFAULT_PRIORITY,
        Some(p) => match p.as_i64() {
            Some(p) => p,
            None => return err(&at(path, "priority"), "must be an integer"),
        },
    };
    Ok(Matcher {
        source,
        operator,
        value,
        priority,
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const H2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn error_of(v: Value) -> String {
        GatewayConfig::from_value(&v).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_config() {
        let cfg = GatewayConfig::from_value(&json!({
            "version": 7,
            "namespaces": [
                {"code": "a", "name": "A", "api_keys": [H1],
                 "matchers": [{"type": "header", "field": "X-Team", "operator": "equals",
                               "value": "a", "priority": 50}]},
                {"code": "b", "status": "disabled",
                 "api_keys": [{"name": "ci", "sha256": H2.to_uppercase()}],
                 "matchers": [{"type": "body", "field": "metadata.team",
                               "operator": "regex", "value": "^b"}]}
            ]
        }))
        .unwrap();
        assert_eq!(cfg.version.as_deref(), Some("7"));
        assert_eq!(cfg.unmatched_status, 401);
        assert_eq!(cfg.namespaces.len(), 2);
        assert_eq!(cfg.namespaces[0].name, "A");
        assert_eq!(cfg.namespaces[1].name, "b");
        assert!(!cfg.namespaces[1].enabled);
        assert_eq!(cfg.key_count(), 2);
        assert_eq!(
            cfg.namespace_for_key(&decode_sha256_hex(H2).unwrap(), 0),
            Some(1)
        );
        assert_eq!(cfg.matchers().len(), 2);
        assert_eq!(cfg.matchers()[0].priority, 50);
        assert!(matches!(cfg.matchers()[0].source, Source::Header(ref h) if h == "x-team"));
    }

    #[test]
    fn matcher_order_is_priority_then_declaration() {
        let m = |v: &str, p: Option<i64>| {
            let mut o = json!({"type": "header", "field": "x", "operator": "equals", "value": v});
            if let Some(p) = p {
                o["priority"] = json!(p);
            }
            o
        };
        let cfg = GatewayConfig::from_value(&json!({"namespaces": [
            {"code": "a", "matchers": [m("a1", None), m("a2", Some(5))]},
            {"code": "b", "matchers": [m("b1", Some(5)), m("b2", None), m("b3", Some(-1))]}
        ]}))
        .unwrap();
        let order: Vec<&str> = cfg.matchers().iter().map(|m| m.value.as_str()).collect();
        assert_eq!(order, ["b3", "a2", "b1", "a1", "b2"]);
    }

    #[test]
    fn errors_name_the_json_path() {
        let ns = |matcher: Value| {
            json!({"namespaces": [{"code": "a"}, {"code": "b"},
                                                       {"code": "c", "matchers": [matcher]}]})
        };
        assert_eq!(
            error_of(ns(
                json!({"type": "header", "field": "x", "operator": "like", "value": "v"})
            )),
            "namespaces[2].matchers[0].operator: unknown operator \"like\""
        );
        assert_eq!(
            error_of(ns(json!({"type": "cookie", "field": "x", "operator": "equals", "value": "v"}))),
            "namespaces[2].matchers[0].type: unknown matcher type \"cookie\" (expected header, query or body)"
        );
        assert!(error_of(ns(
            json!({"type": "header", "field": "x", "operator": "regex", "value": "("})
        ))
        .starts_with("namespaces[2].matchers[0].value: invalid regex"));
        assert_eq!(
            error_of(ns(
                json!({"type": "header", "field": "x", "operator": "equals"})
            )),
            "namespaces[2].matchers[0].value: is required"
        );
        assert_eq!(
            error_of(ns(
                json!({"type": "body", "field": "a..b", "operator": "equals", "value": "v"})
            )),
            "namespaces[2].matchers[0].field: invalid body path \"a..b\""
        );
        assert_eq!(
            error_of(ns(
                json!({"type": "header", "field": "x", "operator": "equals", "value": "v", "priority": "high"})
            )),
            "namespaces[2].matchers[0].priority: must be an integer"
        );
    }

    #[test]
    fn namespace_level_errors() {
        assert_eq!(error_of(json!([])), "must be an object");
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "name": "Team\r\nX: 1"}]})),
            "namespaces[0].name: must not contain control characters (line breaks, tabs, NUL)"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "api_keys": [{"sha256": "00", "name": "k\n"}]}]})),
            "namespaces[0].api_keys[0].name: must not contain control characters (line breaks, tabs, NUL)"
        );
        assert_eq!(
            error_of(json!({"namespace": []})),
            "namespace: unknown field"
        );
        assert_eq!(
            error_of(json!({"namespaces": {}})),
            "namespaces: must be an array"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"name": "x"}]})),
            "namespaces[0].code: is required"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a b"}]})),
            "namespaces[0].code: may only contain letters, digits, '-', '_' and '.'"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a"}, {"code": "a"}]})),
            "namespaces[1].code: duplicate namespace code \"a\" (also namespaces[0])"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "status": "on"}]})),
            "namespaces[0].status: must be \"enabled\" or \"disabled\", not \"on\""
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "matcher": {}}]})),
            "namespaces[0].matcher: unknown field"
        );
        assert_eq!(
            error_of(json!({"unmatched_status": 403})),
            "unmatched_status: must be 401 or 404"
        );
    }

    #[test]
    fn key_errors() {
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "api_keys": ["sk-plaintext"]}]})),
            "namespaces[0].api_keys[0]: must be 64 hexadecimal characters (the sha256 of the key, never the key)"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "api_keys": [{"sha256": "zz"}]}]})),
            "namespaces[0].api_keys[0].sha256: must be 64 hexadecimal characters (the sha256 of the key, never the key)"
        );
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "api_keys": [H1]},
                                           {"code": "b", "api_keys": [H1]}]})),
            "namespaces[1].api_keys[0]: duplicate key hash (already used by namespace \"a\")"
        );
    }

    #[test]
    fn key_expiry_in_both_formats() {
        let expiry = 1_798_675_200_000; // 2026-12-31T00:00:00Z
        let cfg = GatewayConfig::from_value(&json!({"namespaces": [{"code": "a", "api_keys": [
            {"sha256": H1, "expires_at": "2026-12-31T00:00:00Z"},
            {"sha256": H2, "name": "ci", "expires_at": 1_798_675_200u64}
        ]}, {"code": "b", "api_keys": [
            {"sha256": "0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55",
             "expires_at": null},
            {"sha256": "4343759ea8049c902c9f114b8cec9dce568787e5728f4bd3eb0d67137e24adf5",
             "expires_at": "2026-12-31T01:00:00.5+01:00"}
        ]}]}))
        .unwrap();
        for hex in [H1, H2] {
            let hash = decode_sha256_hex(hex).unwrap();
            assert_eq!(cfg.key(&hash).unwrap().expires_ms, Some(expiry));
            // before, at and after the expiry
            assert_eq!(cfg.namespace_for_key(&hash, expiry - 1), Some(0));
            assert_eq!(cfg.namespace_for_key(&hash, expiry), None);
            assert_eq!(cfg.namespace_for_key(&hash, expiry + 1), None);
        }
        let forever =
            decode_sha256_hex("0b006f9beb977623c3f78ec1be7fe09519ecfab87240f4f263e4164f76667e55")
                .unwrap();
        assert_eq!(cfg.key(&forever).unwrap().expires_ms, None);
        assert_eq!(cfg.namespace_for_key(&forever, u64::MAX), Some(1));
        let half =
            decode_sha256_hex("4343759ea8049c902c9f114b8cec9dce568787e5728f4bd3eb0d67137e24adf5")
                .unwrap();
        assert_eq!(cfg.namespace_for_key(&half, expiry + 499), Some(1));
        assert_eq!(cfg.namespace_for_key(&half, expiry + 500), None);
        // an expired key still counts as a key of the file (and its hash as used)
        assert_eq!(cfg.key_count(), 4);
        assert_eq!(cfg.namespace_for_key(&[0; 32], 0), None);
    }

    #[test]
    fn key_expiry_errors_name_the_path() {
        let msg = "must be an RFC 3339 time (e.g. \"2026-12-31T00:00:00Z\") or unix seconds";
        for bad in [
            json!("2026-12-31"),
            json!("2026-12-31T00:00:00"),
            json!("2026-02-29T00:00:00Z"),
            json!("31/12/2026"),
            json!("1798675200"),
            json!(-5),
            json!(1.5),
            json!(true),
            json!({}),
        ] {
            assert_eq!(
                error_of(json!({"namespaces": [{"code": "a", "api_keys": [
                    H1, {"sha256": H2, "expires_at": bad}]}]})),
                format!("namespaces[0].api_keys[1].expires_at: {msg}")
            );
        }
        // a bare hash string has no room for an expiry; an unknown field is still an error
        assert_eq!(
            error_of(json!({"namespaces": [{"code": "a", "api_keys": [
                {"sha256": H2, "expires": 5}]}]})),
            "namespaces[0].api_keys[0].expires: unknown field"
        );
    }

    #[test]
    fn invalid_json_is_reported() {
        let e = GatewayConfig::from_json(b"{\"namespaces\": [}").unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
    }

    #[test]
    fn empty_config_is_valid() {
        let cfg = GatewayConfig::from_json(b"{}").unwrap();
        assert!(cfg.namespaces.is_empty());
        assert_eq!(cfg.unmatched_status, 401);
    }
}
