//! Namespaces: `code` (the identity, never changed), `name`, `description`, `status`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{body_object, known, merge_patch, opt_string, Applied, Ctx};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{Namespace, State};
use crate::core::admin::views;

/// A namespace's fields, and the counts its view adds (ignored when a client sends the view
/// back, as the other fields the API adds are).
const FIELDS: [&str; 7] = [
    "code",
    "name",
    "description",
    "status",
    "key_count",
    "matcher_count",
    "policy_count",
];

/// The namespace's place in the document (namespaces are in code order).
pub fn doc_path(state: &State, code: &str) -> Option<String> {
    state
        .namespaces
        .keys()
        .position(|c| c == code)
        .map(|i| format!("namespaces[{i}]"))
}

fn status(obj: &serde_json::Map<String, Value>) -> Result<Option<bool>, ApiError> {
    match opt_string(obj, "status")?.as_deref() {
        None => Ok(None),
        Some("enabled") => Ok(Some(true)),
        Some("disabled") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(
            "status",
            format!("must be \"enabled\" or \"disabled\", not \"{other}\""),
        )),
    }
}

pub fn create(state: &mut State, body: &Value, ctx: &Ctx) -> Result<Applied, ApiError> {
    let obj = body_object(body)?;
    known(obj, &FIELDS)?;
    let code = opt_string(obj, "code")?.ok_or_else(|| ApiError::invalid("code", "is required"))?;
    if state.namespaces.contains_key(&code) {
        return Err(
            ApiError::conflict(format!("namespace \"{code}\" already exists"))
                .with_detail("code", "already exists"),
        );
    }
    let ns = Namespace {
        code: code.clone(),
        name: opt_string(obj, "name")?,
        description: opt_string(obj, "description")?,
        enabled: status(obj)?.unwrap_or(true),
        keys: BTreeMap::new(),
        matchers: Vec::new(),
        policies: Vec::new(),
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
    };
    let view = views::namespace(&ns);
    state.namespaces.insert(code.clone(), ns);
    let mut a = Applied::new(201, "namespace.create", format!("namespaces/{code}"), view);
    a.location = Some(format!("namespaces/{code}"));
    a.doc_path = doc_path(state, &code);
    Ok(a)
}

/// PUT (every field; an absent one takes its default) or PATCH (a merge patch).
pub fn replace(
    state: &mut State,
    code: &str,
    body: &Value,
    ctx: &Ctx,
    patch: bool,
) -> Result<Applied, ApiError> {
    let ns = state
        .namespaces
        .get(code)
        .ok_or_else(|| ApiError::not_found("namespace", code))?;
    let input = if patch {
        let mut cur = serde_json::json!({
            "code": ns.code, "name": ns.name, "description": ns.description,
            "status": if ns.enabled { "enabled" } else { "disabled" },
        });
        body_object(body)?;
        merge_patch(&mut cur, body);
        cur
    } else {
        body.clone()
    };
    let obj = body_object(&input)?;
    known(obj, &FIELDS)?;
    if let Some(c) = opt_string(obj, "code")? {
        if c != code {
            return Err(ApiError::invalid(
                "code",
                "a namespace's code cannot change",
            ));
        }
    }
    let (name, description, enabled) = (
        opt_string(obj, "name")?,
        opt_string(obj, "description")?,
        status(obj)?.unwrap_or(true),
    );
    let ns = state
        .namespaces
        .get_mut(code)
        .ok_or_else(|| ApiError::not_found("namespace", code))?;
    if ns.name != name || ns.description != description || ns.enabled != enabled {
        ns.name = name;
        ns.description = description;
        ns.enabled = enabled;
        ns.updated_at = ctx.now_ms;
    }
    let view = views::namespace(ns);
    let mut a = Applied::new(200, "namespace.update", format!("namespaces/{code}"), view);
    a.doc_path = doc_path(state, code);
    Ok(a)
}

pub fn delete(state: &mut State, code: &str) -> Result<Applied, ApiError> {
    if !state.namespaces.contains_key(code) {
        return Err(ApiError::not_found("namespace", code));
    }
    let routes = state.routes_using_namespace(code);
    if !routes.is_empty() {
        return Err(ApiError::conflict(format!(
            "namespace \"{code}\" is named by route(s) {}: change them first",
            quoted(&routes)
        )));
    }
    state.namespaces.remove(code);
    Ok(Applied::new(
        200,
        "namespace.delete",
        format!("namespaces/{code}"),
        Value::Null,
    ))
}

pub fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
