//! What the API shows of each resource (never a secret: keys only as hash and display
//! prefix, credentials as set/unset, their kind and last four characters), and the ETag of
//! what it shows.

use serde_json::{json, Map, Value};

use super::clock::format_ms;
use super::state::{Item, Key, Namespace, Route, State, StoredCredential, Target};
use crate::core::snapshot::sha256_hex;

pub fn namespace(ns: &Namespace) -> Value {
    json!({
        "code": ns.code,
        "name": ns.name,
        "description": ns.description,
        "status": if ns.enabled { "enabled" } else { "disabled" },
        "key_count": ns.keys.len(),
        "matcher_count": ns.matchers.len(),
        "policy_count": ns.policies.len(),
        "created_at": format_ms(ns.created_at),
        "updated_at": format_ms(ns.updated_at),
    })
}

/// A key's status at `now_ms`: `active`, `disabled` or `expired`.
pub fn key_status(k: &Key, now_ms: i64) -> &'static str {
    if !k.enabled {
        "disabled"
    } else if k.expires_at.is_some_and(|t| t <= now_ms) {
        "expired"
    } else {
        "active"
    }
}

pub fn key(ns: &str, k: &Key, now_ms: i64) -> Value {
    json!({
        "id": k.id,
        "namespace": ns,
        "name": k.name,
        "sha256": k.sha256,
        "prefix": k.prefix,
        "enabled": k.enabled,
        "status": key_status(k, now_ms),
        "expires_at": k.expires_at.map(format_ms),
        "rotated_to": k.rotated_to,
        "created_at": format_ms(k.created_at),
        "updated_at": format_ms(k.updated_at),
    })
}

/// Fields the API adds to a resource's own (the config file's) fields; ignored when a
/// client sends them back.
pub const READ_ONLY: [&str; 5] = ["id", "namespace", "created_at", "updated_at", "etag"];

/// A spec with the API's fields added.
fn flat(spec: &Map<String, Value>, extra: Vec<(&str, Value)>) -> Value {
    let mut o = spec.clone();
    for (k, v) in extra {
        o.insert(k.to_string(), v);
    }
    Value::Object(o)
}

/// A matcher or policy: its fields as in the config file, with `id`, `namespace`,
/// `position` and times.
pub fn item(ns: &str, position: usize, it: &Item) -> Value {
    flat(
        &it.spec,
        vec![
            ("id", Value::from(it.id)),
            ("namespace", Value::from(ns)),
            ("position", Value::from(position)),
            ("created_at", Value::from(format_ms(it.created_at))),
            ("updated_at", Value::from(format_ms(it.updated_at))),
        ],
    )
}

pub fn credential(c: Option<&StoredCredential>) -> Value {
    match c {
        None => json!({"set": false}),
        Some(StoredCredential::Sealed { last4, .. }) => {
            json!({"set": true, "kind": "value", "last4": if last4.is_empty() { Value::Null } else { Value::from(last4.clone()) }})
        }
        Some(StoredCredential::Env { name }) => json!({"set": true, "kind": "env", "env": name}),
        Some(StoredCredential::File { path }) => json!({"set": true, "kind": "file", "file": path}),
    }
}

/// A target's fields as in the config file, its credential shown as set/unset.
pub fn target(t: &Target) -> Value {
    flat(
        &t.spec,
        vec![
            ("name", Value::from(t.name.clone())),
            ("credential", credential(t.credential.as_ref())),
            ("created_at", Value::from(format_ms(t.created_at))),
            ("updated_at", Value::from(format_ms(t.updated_at))),
        ],
    )
}

pub fn route(position: usize, r: &Route) -> Value {
    flat(
        &r.spec,
        vec![
            ("name", Value::from(r.name.clone())),
            ("position", Value::from(position)),
            ("created_at", Value::from(format_ms(r.created_at))),
            ("updated_at", Value::from(format_ms(r.updated_at))),
        ],
    )
}

pub fn settings(s: &State) -> Value {
    json!({"unmatched_status": s.settings.unmatched_status})
}

/// A gateway document as a viewer may see it: sealed credentials shown as set, not as
/// their sealed text (editors and admins get the document as the nodes load it, which an
/// import takes back).
pub fn redact_document(mut doc: Value) -> Value {
    if let Some(targets) = doc.get_mut("targets").and_then(Value::as_array_mut) {
        for t in targets {
            if let Some(c) = t.get_mut("credential") {
                if c.get("sealed").is_some() {
                    *c = json!({"sealed": "(redacted)"});
                }
            }
        }
    }
    doc
}

/// The strong ETag of a representation.
pub fn etag(v: &Value) -> String {
    let text = serde_json::to_vec(v).unwrap_or_default();
    format!("\"{}\"", &sha256_hex(&text)[..20])
}

/// The ETag of the whole configuration at `version`.
pub fn config_etag(version: u64) -> String {
    format!("\"v{version}\"")
}

/// Whether an `If-Match` value holds for the current ETag (`None`: the resource does not
/// exist). `*` matches any existing resource; weak tags compare as strong ones do not
/// (RFC 9110: If-Match uses the strong comparison).
pub fn if_match_holds(header: &str, current: Option<&str>) -> bool {
    let Some(current) = current else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || (!t.starts_with("W/") && t == current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_see_no_sealed_text() {
        let doc = json!({"targets": [{"name": "a", "credential": {"sealed": "v1:abc:def"}},
                                     {"name": "b", "credential": {"env": "K"}}, {"name": "c"}]});
        let r = redact_document(doc);
        assert_eq!(
            r["targets"][0]["credential"],
            json!({"sealed": "(redacted)"})
        );
        assert_eq!(r["targets"][1]["credential"], json!({"env": "K"}));
        assert!(r["targets"][2].get("credential").is_none());
    }

    #[test]
    fn if_match() {
        assert!(if_match_holds("\"abc\"", Some("\"abc\"")));
        assert!(if_match_holds("\"x\", \"abc\"", Some("\"abc\"")));
        assert!(if_match_holds("*", Some("\"abc\"")));
        assert!(!if_match_holds("*", None));
        assert!(!if_match_holds("W/\"abc\"", Some("\"abc\"")));
        assert!(!if_match_holds("\"abd\"", Some("\"abc\"")));
        assert_eq!(config_etag(7), "\"v7\"");
        assert_eq!(etag(&json!({"a": 1})).len(), 22);
    }
}
