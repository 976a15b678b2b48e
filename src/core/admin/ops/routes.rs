//! Routes: the config file's route object, with a unique `name` and a `position` (routes
//! are tried in order; the first that matches serves the request).

use serde_json::Value;

use super::{body_object, merge_patch, opt_string, position, same_name, spec_of, Applied, Ctx};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{Route, State};
use crate::core::admin::views;

fn name_of(obj: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match opt_string(obj, "name")? {
        Some(n) if !n.is_empty() && n.len() <= 128 && !n.chars().any(char::is_control) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "name",
            "must be 1 to 128 characters without control characters",
        )),
        None => Err(ApiError::invalid("name", "is required")),
    }
}

pub fn create(state: &mut State, body: &Value, ctx: &Ctx) -> Result<Applied, ApiError> {
    let obj = body_object(body)?;
    let name = name_of(obj)?;
    if state.route_index(&name).is_some() {
        return Err(
            ApiError::conflict(format!("route \"{name}\" already exists"))
                .with_detail("name", "already exists"),
        );
    }
    let at = position(obj, state.routes.len())?.unwrap_or(state.routes.len());
    let r = Route {
        name: name.clone(),
        spec: spec_of(obj, &["name", "position"]),
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
    };
    let view = views::route(at, &r);
    state.routes.insert(at, r);
    let mut a = Applied::new(201, "route.create", format!("routes/{name}"), view);
    a.location = Some(a.resource.clone());
    a.doc_path = Some(format!("routes[{at}]"));
    Ok(a)
}

pub fn replace(
    state: &mut State,
    name: &str,
    body: &Value,
    ctx: &Ctx,
    patch: bool,
) -> Result<Applied, ApiError> {
    body_object(body)?;
    let from = state
        .route_index(name)
        .ok_or_else(|| ApiError::not_found("route", name))?;
    let input = if patch {
        let mut cur = Value::Object(state.routes[from].spec.clone());
        cur["name"] = Value::from(name);
        cur["position"] = Value::from(from);
        merge_patch(&mut cur, body);
        cur
    } else {
        body.clone()
    };
    let obj = body_object(&input)?;
    same_name(obj, name, "a route's name cannot change: create another")?;
    let spec = spec_of(obj, &["name", "position"]);
    let mut r = state.routes.remove(from);
    let to = position(obj, state.routes.len())?.unwrap_or(from);
    if r.spec != spec || to != from {
        r.spec = spec;
        r.updated_at = ctx.now_ms;
    }
    let view = views::route(to, &r);
    state.routes.insert(to, r);
    let mut a = Applied::new(200, "route.update", format!("routes/{name}"), view);
    a.doc_path = Some(format!("routes[{to}]"));
    Ok(a)
}

pub fn delete(state: &mut State, name: &str) -> Result<Applied, ApiError> {
    let at = state
        .route_index(name)
        .ok_or_else(|| ApiError::not_found("route", name))?;
    state.routes.remove(at);
    Ok(Applied::new(
        200,
        "route.delete",
        format!("routes/{name}"),
        Value::Null,
    ))
}
