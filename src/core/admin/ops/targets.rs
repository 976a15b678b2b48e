//! Provider targets: the config file's target object; `credential` is write-only (a plain
//! `value` is sealed before it is stored, `env`/`file` name where every node reads it). A
//! body without `credential` keeps the stored one; `"credential": null` removes it.

use serde_json::{Map, Value};

use super::namespaces::quoted;
use super::{body_object, merge_patch, opt_string, same_name, spec_of, Applied, Ctx};
use crate::core::admin::document::{stored_credential, ImportEnv};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{State, StoredCredential, Target};
use crate::core::admin::views;

fn doc_path(state: &State, name: &str) -> Option<String> {
    state
        .targets
        .keys()
        .position(|n| n == name)
        .map(|i| format!("targets[{i}]"))
}

/// The credential a body asks for: `None` keeps `old`.
fn credential(
    obj: &Map<String, Value>,
    old: Option<&StoredCredential>,
    ctx: &Ctx,
) -> Result<Option<Option<StoredCredential>>, ApiError> {
    match obj.get("credential") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        // the API's own view sent back (GET, edit, PUT): keeps what is stored
        Some(Value::Object(o)) if o.contains_key("set") => Ok(None),
        Some(c) => {
            let env = ImportEnv {
                now_ms: ctx.now_ms,
                seal: ctx.seal,
                any_file: false,
            };
            stored_credential(c, old, &env)
                .map(|c| Some(Some(c)))
                .map_err(|m| match m.split_once(": ") {
                    Some((field, msg)) if !field.contains(' ') => {
                        ApiError::invalid(format!("credential.{field}"), msg)
                    }
                    _ => ApiError::invalid("credential", m),
                })
        }
    }
}

pub fn create(state: &mut State, body: &Value, ctx: &Ctx) -> Result<Applied, ApiError> {
    let obj = body_object(body)?;
    let name = opt_string(obj, "name")?.ok_or_else(|| ApiError::invalid("name", "is required"))?;
    if state.targets.contains_key(&name) {
        return Err(
            ApiError::conflict(format!("target \"{name}\" already exists"))
                .with_detail("name", "already exists"),
        );
    }
    let t = Target {
        name: name.clone(),
        spec: spec_of(obj, &["name", "credential"]),
        credential: credential(obj, None, ctx)?.flatten(),
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
    };
    let view = views::target(&t);
    state.targets.insert(name.clone(), t);
    let mut a = Applied::new(201, "target.create", format!("targets/{name}"), view);
    a.location = Some(a.resource.clone());
    a.doc_path = doc_path(state, &name);
    Ok(a)
}

pub fn replace(
    state: &mut State,
    name: &str,
    body: &Value,
    ctx: &Ctx,
    patch: bool,
) -> Result<Applied, ApiError> {
    let body_obj = body_object(body)?;
    let old = state
        .targets
        .get(name)
        .ok_or_else(|| ApiError::not_found("target", name))?;
    let input = if patch {
        let mut cur = Value::Object(old.spec.clone());
        let mut p = body_obj.clone();
        p.remove("credential");
        merge_patch(&mut cur, &Value::Object(p));
        cur
    } else {
        body.clone()
    };
    let obj = body_object(&input)?;
    same_name(
        obj,
        name,
        "a target's name cannot change (routes name it): create another",
    )?;
    let spec = spec_of(obj, &["name", "credential"]);
    let cred = match credential(body_obj, old.credential.as_ref(), ctx)? {
        Some(c) => c,
        None => old.credential.clone(),
    };
    let t = state
        .targets
        .get_mut(name)
        .ok_or_else(|| ApiError::not_found("target", name))?;
    if t.spec != spec || t.credential != cred {
        t.spec = spec;
        t.credential = cred;
        t.updated_at = ctx.now_ms;
    }
    let view = views::target(t);
    let mut a = Applied::new(200, "target.update", format!("targets/{name}"), view);
    a.doc_path = doc_path(state, name);
    Ok(a)
}

pub fn delete(state: &mut State, name: &str) -> Result<Applied, ApiError> {
    if !state.targets.contains_key(name) {
        return Err(ApiError::not_found("target", name));
    }
    let routes = state.routes_using_target(name);
    if !routes.is_empty() {
        return Err(ApiError::conflict(format!(
            "target \"{name}\" is used by route(s) {}: change them first",
            quoted(&routes)
        )));
    }
    state.targets.remove(name);
    Ok(Applied::new(
        200,
        "target.delete",
        format!("targets/{name}"),
        Value::Null,
    ))
}
