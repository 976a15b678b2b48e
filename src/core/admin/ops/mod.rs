//! The config center's writes as pure operations on a [`State`]: each takes the request's
//! body, changes the state or says why not (with the JSON path), and reports what the
//! answer and the audit log say. The caller (under the config head's lock) then builds the
//! document, has the data plane's loader check it, and stores the rows that changed.

mod items;
mod keys;
mod namespaces;
mod routes;
mod settings;
mod targets;

use serde_json::{Map, Value};

pub use items::ItemKind;

use super::document::document;
use super::error::{strip_prefix, ApiError};
use super::state::State;
use super::views::READ_ONLY;
use crate::core::config::GatewayConfig;

/// What an operation needs besides the state and the body.
pub struct Ctx<'a> {
    pub now_ms: i64,
    /// Seals a plain provider key (`Err`: no secret key configured).
    pub seal: &'a dyn Fn(&str) -> Result<String, String>,
    /// A newly generated client key (the runtime draws it), for key creation and rotation.
    pub new_key: Option<&'a str>,
}

/// A write the API can ask for.
#[derive(Debug, Clone)]
pub enum Op {
    CreateNamespace(Value),
    ReplaceNamespace(String, Value),
    PatchNamespace(String, Value),
    DeleteNamespace(String),
    CreateKey(String, Value),
    PatchKey(String, String, Value),
    DeleteKey(String, String),
    RotateKey(String, String, Value),
    CreateItem(ItemKind, String, Value),
    ReplaceItem(ItemKind, String, u64, Value),
    PatchItem(ItemKind, String, u64, Value),
    DeleteItem(ItemKind, String, u64),
    CreateTarget(Value),
    ReplaceTarget(String, Value),
    PatchTarget(String, Value),
    DeleteTarget(String),
    CreateRoute(Value),
    ReplaceRoute(String, Value),
    PatchRoute(String, Value),
    DeleteRoute(String),
    ReplaceSettings(Value),
    PatchSettings(Value),
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// 200, or 201 for a creation.
    pub status: u16,
    /// The resource as the API shows it after the write (`Null` after a deletion).
    pub body: Value,
    /// `Location` of a created resource (below `/api/v1/`).
    pub location: Option<String>,
    /// The audit action, e.g. `namespace.create`.
    pub action: &'static str,
    /// The resource, e.g. `namespaces/team-a/keys/0b006f9beb97`.
    pub resource: String,
    /// Where the resource is in the new document (to show its validation errors with paths
    /// relative to the request body).
    pub doc_path: Option<String>,
    /// The plaintext of a generated key: in the answer once, never stored or logged.
    pub secret: Option<String>,
}

impl Applied {
    fn new(status: u16, action: &'static str, resource: String, body: Value) -> Applied {
        Applied {
            status,
            body,
            location: None,
            action,
            resource,
            doc_path: None,
            secret: None,
        }
    }
}

/// Applies `op` to `state`. On `Err` the state may be half changed: the caller applies to
/// a copy.
pub fn apply(state: &mut State, op: &Op, ctx: &Ctx) -> Result<Applied, ApiError> {
    let applied = match op {
        Op::CreateNamespace(b) => namespaces::create(state, b, ctx),
        Op::ReplaceNamespace(code, b) => namespaces::replace(state, code, b, ctx, false),
        Op::PatchNamespace(code, b) => namespaces::replace(state, code, b, ctx, true),
        Op::DeleteNamespace(code) => namespaces::delete(state, code),
        Op::CreateKey(ns, b) => keys::create(state, ns, b, ctx),
        Op::PatchKey(ns, id, b) => keys::patch(state, ns, id, b, ctx),
        Op::DeleteKey(ns, id) => keys::delete(state, ns, id),
        Op::RotateKey(ns, id, b) => keys::rotate(state, ns, id, b, ctx),
        Op::CreateItem(kind, ns, b) => items::create(state, *kind, ns, b, ctx),
        Op::ReplaceItem(kind, ns, id, b) => items::replace(state, *kind, ns, *id, b, ctx, false),
        Op::PatchItem(kind, ns, id, b) => items::replace(state, *kind, ns, *id, b, ctx, true),
        Op::DeleteItem(kind, ns, id) => items::delete(state, *kind, ns, *id),
        Op::CreateTarget(b) => targets::create(state, b, ctx),
        Op::ReplaceTarget(name, b) => targets::replace(state, name, b, ctx, false),
        Op::PatchTarget(name, b) => targets::replace(state, name, b, ctx, true),
        Op::DeleteTarget(name) => targets::delete(state, name),
        Op::CreateRoute(b) => routes::create(state, b, ctx),
        Op::ReplaceRoute(name, b) => routes::replace(state, name, b, ctx, false),
        Op::PatchRoute(name, b) => routes::replace(state, name, b, ctx, true),
        Op::DeleteRoute(name) => routes::delete(state, name),
        Op::ReplaceSettings(b) => settings::replace(state, b, false),
        Op::PatchSettings(b) => settings::replace(state, b, true),
    }?;
    check(state, &applied)?;
    Ok(applied)
}

/// The data plane's parser on the whole new document; an error inside the written
/// resource is reported relative to the request body.
pub fn check(state: &State, applied: &Applied) -> Result<(), ApiError> {
    let doc = document(state, 1, 0);
    GatewayConfig::from_value(&doc)
        .map(|_| ())
        .and_then(|_| super::tables::fits(state))
        .map_err(|e| match &applied.doc_path {
            Some(prefix) if strip_prefix(&e.path, prefix) != e.path || e.path == *prefix => {
                ApiError::from_config(&e, prefix)
            }
            _ => ApiError::new(
                409,
                "invalid_config",
                format!("the change would make the configuration invalid: {e}"),
            )
            .with_detail(e.path.clone(), e.message.clone()),
        })
}

/// The request body as an object (`path` "" in errors).
fn body_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))
}

/// Applies an RFC 7396 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A body's own fields: the API's read-only fields (and `extra`) taken out.
fn spec_of(body: &Map<String, Value>, extra: &[&str]) -> Map<String, Value> {
    body.iter()
        .filter(|(k, _)| !READ_ONLY.contains(&k.as_str()) && !extra.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An optional string field.
fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(key, "must be a string")),
    }
}

/// `position`: where to put an item in a list of `len` (default: the end).
fn position(obj: &Map<String, Value>, len: usize) -> Result<Option<usize>, ApiError> {
    match obj.get("position") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(p) if p as usize <= len => Ok(Some(p as usize)),
            _ => Err(ApiError::invalid(
                "position",
                format!("must be an integer from 0 to {len}"),
            )),
        },
    }
}

/// A body that names its resource must name the one in the URL: `what` says why the name
/// cannot change.
fn same_name(obj: &Map<String, Value>, name: &str, what: &str) -> Result<(), ApiError> {
    match opt_string(obj, "name")? {
        Some(n) if n != name => Err(ApiError::invalid("name", what.to_string())),
        _ => Ok(()),
    }
}

/// Only these fields may be in the body.
fn known(obj: &Map<String, Value>, fields: &[&str]) -> Result<(), ApiError> {
    match obj
        .keys()
        .find(|k| !fields.contains(&k.as_str()) && !READ_ONLY.contains(&k.as_str()))
    {
        Some(k) => Err(ApiError::invalid(k.clone(), "unknown field")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
