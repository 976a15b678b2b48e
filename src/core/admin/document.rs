//! The gateway document (the `ai_gateway_config` format every node parses) made from the
//! config center's [`State`], and a document taken back into a state (whole-config import).

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Map, Value};

use super::clock::format_ms;
use super::error::ApiError;
use super::state::{key_id, Item, Key, Namespace, Route, State, StoredCredential, Target};
use super::tables::{CREDENTIAL_STORED_MAX, CREDENTIAL_VALUE_MAX, NAME_MAX};
use crate::core::config::GatewayConfig;

/// The document of `state` as version `version`. Disabled keys and keys already expired at
/// `now_ms` are left out (they work nowhere); later expiries travel with their key, so each
/// node stops a key at its time without a new version.
pub fn document(state: &State, version: u64, now_ms: i64) -> Value {
    let namespaces: Vec<Value> = state
        .namespaces
        .values()
        .map(|ns| namespace_document(ns, now_ms))
        .collect();
    let targets: Vec<Value> = state.targets.values().map(target_document).collect();
    let routes: Vec<Value> = state.routes.iter().map(route_document).collect();
    json!({
        "version": version,
        "unmatched_status": state.settings.unmatched_status,
        "namespaces": namespaces,
        "targets": targets,
        "routes": routes,
    })
}

/// The document's bytes (what its sha256 is of).
pub fn document_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
}

fn namespace_document(ns: &Namespace, now_ms: i64) -> Value {
    let mut o = Map::new();
    o.insert("code".into(), Value::from(ns.code.clone()));
    if let Some(n) = &ns.name {
        o.insert("name".into(), Value::from(n.clone()));
    }
    if let Some(d) = &ns.description {
        o.insert("description".into(), Value::from(d.clone()));
    }
    o.insert(
        "status".into(),
        Value::from(if ns.enabled { "enabled" } else { "disabled" }),
    );
    let keys: Vec<Value> = ns
        .keys
        .values()
        .filter(|k| k.enabled && k.expires_at.map_or(true, |t| t > now_ms))
        .map(|k| {
            let mut o = Map::new();
            o.insert("sha256".into(), Value::from(k.sha256.clone()));
            if let Some(n) = &k.name {
                o.insert("name".into(), Value::from(n.clone()));
            }
            if let Some(t) = k.expires_at {
                o.insert("expires_at".into(), Value::from(format_ms(t)));
            }
            Value::Object(o)
        })
        .collect();
    o.insert("api_keys".into(), Value::Array(keys));
    o.insert(
        "matchers".into(),
        Value::Array(
            ns.matchers
                .iter()
                .map(|m| Value::Object(m.spec.clone()))
                .collect(),
        ),
    );
    o.insert(
        "policies".into(),
        Value::Array(
            ns.policies
                .iter()
                .map(|p| Value::Object(p.spec.clone()))
                .collect(),
        ),
    );
    Value::Object(o)
}

/// A target's object with its stored credential.
pub fn target_document(t: &Target) -> Value {
    let mut o = t.spec.clone();
    o.insert("name".into(), Value::from(t.name.clone()));
    if let Some(c) = &t.credential {
        o.insert("credential".into(), credential_document(c));
    }
    Value::Object(o)
}

pub fn credential_document(c: &StoredCredential) -> Value {
    match c {
        StoredCredential::Sealed { sealed, .. } => json!({"sealed": sealed}),
        StoredCredential::Env { name } => json!({"env": name}),
        StoredCredential::File { path } => json!({"file": path}),
    }
}

pub fn route_document(r: &Route) -> Value {
    let mut o = r.spec.clone();
    o.insert("name".into(), Value::from(r.name.clone()));
    Value::Object(o)
}

/// What importing needs besides the document: the time, and sealing a plain credential.
pub struct ImportEnv<'a> {
    pub now_ms: i64,
    /// Seals a plain provider key; `Err` when the config center has no secret key.
    pub seal: &'a dyn Fn(&str) -> Result<String, String>,
    /// Whether `{"file": ...}` credentials may name any path: only for a node's own
    /// configuration file (the first revision). What the API is sent may only name files
    /// beside the nodes' configuration file (a relative path without `..`), so that an
    /// editor cannot have a node send another of its files to a provider of its choosing.
    pub any_file: bool,
}

/// Takes a whole gateway document into a state that replaces `current`. The document must
/// pass the data plane's parser. What stays the same keeps its identity and times: keys by
/// hash (their display prefix and rotation link too), matchers and policies equal to one at
/// the same place, targets and routes by name. Routes without a name are named `route-<n>`.
/// Disabled keys, which no document holds, are not kept.
pub fn import(doc: &Value, current: &State, env: &ImportEnv) -> Result<State, ApiError> {
    GatewayConfig::from_value(doc).map_err(|e| ApiError::from_config(&e, ""))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| ApiError::invalid("", "must be an object"))?;
    let now = env.now_ms;
    let mut next = State {
        next_id: current.next_id.max(1),
        ..State::default()
    };
    if let Some(s) = obj.get("unmatched_status").and_then(Value::as_u64) {
        next.settings.unmatched_status = s as u16;
    }
    for (i, ns) in array(obj, "namespaces").iter().enumerate() {
        let o = ns
            .as_object()
            .ok_or_else(|| ApiError::invalid(format!("namespaces[{i}]"), "must be an object"))?;
        let code = o
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let old = current.namespaces.get(&code);
        let mut keys = BTreeMap::new();
        for (k, key) in array(o, "api_keys").iter().enumerate() {
            let (sha, name, expires) = match key {
                Value::String(s) => (s.to_ascii_lowercase(), None, None),
                Value::Object(ko) => (
                    ko.get("sha256")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    ko.get("name").and_then(Value::as_str).map(str::to_string),
                    match ko.get("expires_at") {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(super::clock::time_value(v).ok_or_else(|| {
                            ApiError::invalid(
                                format!("namespaces[{i}].api_keys[{k}].expires_at"),
                                "must be an RFC 3339 time or unix seconds",
                            )
                        })?),
                    },
                ),
                _ => continue,
            };
            if name
                .as_deref()
                .is_some_and(|n| n.chars().count() > NAME_MAX)
            {
                return Err(ApiError::invalid(
                    format!("namespaces[{i}].api_keys[{k}].name"),
                    format!("must be at most {NAME_MAX} characters"),
                ));
            }
            let id = key_id(&sha);
            if keys.contains_key(&id) || next.key_id_taken(&id) {
                return Err(ApiError::conflict(format!(
                    "namespaces[{i}].api_keys[{k}]: two keys share the id {id} (the first 12 hex digits of their sha256)"
                ))
                .with_detail(format!("namespaces[{i}].api_keys[{k}]"), "key id taken"));
            }
            let was = current.key_by_sha(&sha).map(|(_, k)| k);
            let same = was.is_some_and(|w| w.name == name && w.expires_at == expires && w.enabled);
            keys.insert(
                id.clone(),
                Key {
                    id,
                    name,
                    sha256: sha,
                    prefix: was.and_then(|w| w.prefix.clone()),
                    enabled: true,
                    expires_at: expires,
                    rotated_to: was.and_then(|w| w.rotated_to.clone()),
                    created_at: was.map_or(now, |w| w.created_at),
                    updated_at: match was {
                        Some(w) if same => w.updated_at,
                        _ => now,
                    },
                },
            );
        }
        let matchers = take_items(
            &mut next,
            array(o, "matchers"),
            old.map(|n| n.matchers.as_slice()),
            now,
        );
        let policies = take_items(
            &mut next,
            array(o, "policies"),
            old.map(|n| n.policies.as_slice()),
            now,
        );
        let name = o.get("name").and_then(Value::as_str).map(str::to_string);
        let description = o
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let enabled = o.get("status").and_then(Value::as_str) != Some("disabled");
        let mut ns = Namespace {
            code: code.clone(),
            name,
            description,
            enabled,
            keys,
            matchers,
            policies,
            created_at: old.map_or(now, |n| n.created_at),
            updated_at: now,
        };
        if let Some(old) = old {
            if old.name == ns.name && old.description == ns.description && old.enabled == ns.enabled
            {
                ns.updated_at = old.updated_at;
            }
        }
        next.namespaces.insert(code, ns);
    }
    for (i, t) in array(obj, "targets").iter().enumerate() {
        let Some(o) = t.as_object() else { continue };
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let old = current.targets.get(&name);
        let mut spec = o.clone();
        spec.remove("name");
        let credential = match spec.remove("credential") {
            None | Some(Value::Null) => None,
            Some(c) => Some(
                stored_credential(&c, old.and_then(|t| t.credential.as_ref()), env)
                    .map_err(|m| ApiError::invalid(format!("targets[{i}].credential"), m))?,
            ),
        };
        let same = old.is_some_and(|t| t.spec == spec && t.credential == credential);
        next.targets.insert(
            name.clone(),
            Target {
                name,
                spec,
                credential,
                created_at: old.map_or(now, |t| t.created_at),
                updated_at: match old {
                    Some(t) if same => t.updated_at,
                    _ => now,
                },
            },
        );
    }
    let mut names: HashSet<String> = array(obj, "routes")
        .iter()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    for (i, r) in array(obj, "routes").iter().enumerate() {
        let Some(o) = r.as_object() else { continue };
        let mut spec = o.clone();
        let name = match spec.remove("name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                let mut n = i + 1;
                while names.contains(&format!("route-{n}")) {
                    n += 1;
                }
                let made = format!("route-{n}");
                names.insert(made.clone());
                made
            }
        };
        if next.routes.iter().any(|r| r.name == name) {
            return Err(ApiError::invalid(
                format!("routes[{i}].name"),
                format!("duplicate route name \"{name}\""),
            ));
        }
        let old = current.routes.iter().find(|r| r.name == name);
        next.routes.push(Route {
            created_at: old.map_or(now, |r| r.created_at),
            updated_at: match old {
                Some(r) if r.spec == spec => r.updated_at,
                _ => now,
            },
            name,
            spec,
        });
    }
    super::tables::fits(&next).map_err(|e| ApiError::from_config(&e, ""))?;
    Ok(next)
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Matchers or policies from a document: one equal to the old one at the same place keeps
/// its id and times.
fn take_items(state: &mut State, list: &[Value], old: Option<&[Item]>, now: i64) -> Vec<Item> {
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let spec = v.as_object()?.clone();
            match old.and_then(|o| o.get(i)).filter(|o| o.spec == spec) {
                Some(o) => Some(o.clone()),
                None => Some(Item {
                    id: state.take_id(),
                    spec,
                    created_at: now,
                    updated_at: now,
                }),
            }
        })
        .collect()
}

/// A credential object of a request or document, as stored: a plain `value` is sealed,
/// `sealed` is taken as it is (the nodes open it), `env` and `file` are references.
pub fn stored_credential(
    c: &Value,
    old: Option<&StoredCredential>,
    env: &ImportEnv,
) -> Result<StoredCredential, String> {
    let o = c.as_object().ok_or("must be an object")?;
    if o.len() != 1 {
        return Err("must have exactly one of \"value\", \"env\", \"file\", \"sealed\"".into());
    }
    let (kind, v) = o.iter().next().ok_or("must not be empty")?;
    let s = v
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{kind}: must be a non-empty string"))?;
    let max = if kind == "value" {
        CREDENTIAL_VALUE_MAX
    } else {
        CREDENTIAL_STORED_MAX
    };
    if s.chars().count() > max {
        return Err(format!("{kind}: must be at most {max} characters"));
    }
    match kind.as_str() {
        "value" => {
            if let Some(problem) = crate::core::fields::token_problem(s) {
                return Err(format!("value: the key {problem}"));
            }
            let sealed = (env.seal)(s)?;
            let last4: String = s
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Ok(StoredCredential::Sealed { sealed, last4 })
        }
        "sealed" => {
            let last4 = match old {
                Some(StoredCredential::Sealed { sealed, last4 }) if sealed == s => last4.clone(),
                _ => String::new(),
            };
            Ok(StoredCredential::Sealed {
                sealed: s.to_string(),
                last4,
            })
        }
        "env" => Ok(StoredCredential::Env {
            name: s.to_string(),
        }),
        "file" if !env.any_file && (s.starts_with('/') || s.split('/').any(|part| part == "..")) => Err(
            "file: must be a path relative to the nodes' ai_gateway_config file, without \"..\" (the API does not name other files of the nodes)"
                .into(),
        ),
        "file" => Ok(StoredCredential::File {
            path: s.to_string(),
        }),
        other => Err(format!(
            "{other}: unknown field (expected \"value\", \"env\", \"file\" or \"sealed\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const H2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn env() -> ImportEnv<'static> {
        ImportEnv {
            now_ms: 1_000,
            seal: &crate::core::admin::test_seal,
            any_file: false,
        }
    }

    #[test]
    fn a_document_round_trips_through_a_state() {
        let doc = json!({
            "version": 3,
            "unmatched_status": 404,
            "namespaces": [
                {"code": "a", "name": "A", "status": "enabled",
                 "api_keys": [{"sha256": H1, "name": "ci", "expires_at": "2030-01-01T00:00:00Z"}, H2],
                 "matchers": [{"type": "header", "field": "x-team", "operator": "equals", "value": "a"}],
                 "policies": [{"type": "requests", "limit": 5, "window": "1m"}]},
                {"code": "b", "status": "disabled"}
            ],
            "targets": [{"name": "t1", "provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                         "credential": {"value": "sk-abcdef"}}],
            "routes": [{"targets": ["t1"]}, {"name": "route-1", "targets": ["t1"], "path_prefix": "/x/"}]
        });
        let s = import(&doc, &State::default(), &env()).unwrap();
        assert_eq!(s.settings.unmatched_status, 404);
        assert_eq!(s.namespaces["a"].keys.len(), 2);
        assert_eq!(
            s.namespaces["a"].keys[&H1[..12]].expires_at,
            Some(1_893_456_000_000)
        );
        assert!(!s.namespaces["b"].enabled);
        assert_eq!(
            s.targets["t1"].credential,
            Some(StoredCredential::Sealed {
                sealed: crate::core::admin::test_seal("sk-abcdef").unwrap(),
                last4: "cdef".into()
            })
        );
        // an unnamed route gets a name that no other route has
        let names: Vec<&str> = s.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["route-2", "route-1"]);
        let out = document(&s, 4, 0);
        assert!(GatewayConfig::from_value(&out).is_ok(), "{out}");
        assert_eq!(out["version"], 4);
        assert_eq!(
            out["targets"][0]["credential"],
            json!({"sealed": crate::core::admin::test_seal("sk-abcdef").unwrap()})
        );
        // importing the document again changes nothing but what the first import made up
        let again = import(&out, &s, &env()).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn disabled_and_expired_keys_stay_out_of_the_document() {
        let mut s = import(
            &json!({"namespaces": [{"code": "a", "api_keys": [H1, H2]}]}),
            &State::default(),
            &env(),
        )
        .unwrap();
        let ns = s.namespaces.get_mut("a").unwrap();
        ns.keys.get_mut(&H1[..12]).unwrap().enabled = false;
        ns.keys.get_mut(&H2[..12]).unwrap().expires_at = Some(5_000);
        assert_eq!(
            document(&s, 1, 4_999)["namespaces"][0]["api_keys"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            document(&s, 1, 5_000)["namespaces"][0]["api_keys"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn import_errors_name_the_path() {
        let e = import(
            &json!({"namespaces": [{"code": "a", "matchers": [{"type": "x"}]}]}),
            &State::default(),
            &env(),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.details[0].path.starts_with("namespaces[0].matchers[0]"),
            "{e:?}"
        );
        let e = import(
            &json!({"targets": [{"name": "t", "provider": "openai", "base_url": "http://h", "credential": {"value": "a b"}}]}),
            &State::default(),
            &env(),
        )
        .unwrap_err();
        assert_eq!(e.details[0].path, "targets[0].credential.value");
    }
}
