//! Matchers and policies of a namespace: objects in the config file's format (checked by
//! the data plane's parser), with an id and a place in their list.

use serde_json::Value;

use super::namespaces::doc_path as ns_path;
use super::{body_object, merge_patch, position, spec_of, Applied, Ctx};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{Item, State};
use crate::core::admin::views;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Matcher,
    Policy,
}

impl ItemKind {
    /// The list's name in the document and in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            ItemKind::Matcher => "matchers",
            ItemKind::Policy => "policies",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            ItemKind::Matcher => "matcher",
            ItemKind::Policy => "policy",
        }
    }

    fn actions(self) -> [&'static str; 3] {
        match self {
            ItemKind::Matcher => ["matcher.create", "matcher.update", "matcher.delete"],
            ItemKind::Policy => ["policy.create", "policy.update", "policy.delete"],
        }
    }
}

fn list<'a>(state: &'a mut State, kind: ItemKind, ns: &str) -> Result<&'a mut Vec<Item>, ApiError> {
    let n = state
        .namespaces
        .get_mut(ns)
        .ok_or_else(|| ApiError::not_found("namespace", ns))?;
    Ok(match kind {
        ItemKind::Matcher => &mut n.matchers,
        ItemKind::Policy => &mut n.policies,
    })
}

fn place(state: &State, kind: ItemKind, ns: &str, index: usize) -> Option<String> {
    ns_path(state, ns).map(|p| format!("{p}.{}[{index}]", kind.plural()))
}

pub fn create(
    state: &mut State,
    kind: ItemKind,
    ns: &str,
    body: &Value,
    ctx: &Ctx,
) -> Result<Applied, ApiError> {
    let obj = body_object(body)?;
    let spec = spec_of(obj, &["position"]);
    let id = state.take_id();
    let items = list(state, kind, ns)?;
    let at = position(obj, items.len())?.unwrap_or(items.len());
    let item = Item {
        id,
        spec,
        created_at: ctx.now_ms,
        updated_at: ctx.now_ms,
    };
    let view = views::item(ns, at, &item);
    items.insert(at, item);
    let mut a = Applied::new(
        201,
        kind.actions()[0],
        format!("namespaces/{ns}/{}/{id}", kind.plural()),
        view,
    );
    a.location = Some(a.resource.clone());
    a.doc_path = place(state, kind, ns, at);
    Ok(a)
}

pub fn replace(
    state: &mut State,
    kind: ItemKind,
    ns: &str,
    id: u64,
    body: &Value,
    ctx: &Ctx,
    patch: bool,
) -> Result<Applied, ApiError> {
    body_object(body)?;
    let items = list(state, kind, ns)?;
    let from = items
        .iter()
        .position(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(kind.singular(), &id.to_string()))?;
    let input = if patch {
        let mut cur = Value::Object(items[from].spec.clone());
        cur["position"] = Value::from(from);
        merge_patch(&mut cur, body);
        cur
    } else {
        body.clone()
    };
    let obj = body_object(&input)?;
    let spec = spec_of(obj, &["position"]);
    let mut item = items.remove(from);
    let to = position(obj, items.len())?.unwrap_or(from);
    if item.spec != spec || to != from {
        item.spec = spec;
        item.updated_at = ctx.now_ms;
    }
    let view = views::item(ns, to, &item);
    items.insert(to, item);
    let mut a = Applied::new(
        200,
        kind.actions()[1],
        format!("namespaces/{ns}/{}/{id}", kind.plural()),
        view,
    );
    a.doc_path = place(state, kind, ns, to);
    Ok(a)
}

pub fn delete(state: &mut State, kind: ItemKind, ns: &str, id: u64) -> Result<Applied, ApiError> {
    let items = list(state, kind, ns)?;
    let at = items
        .iter()
        .position(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(kind.singular(), &id.to_string()))?;
    items.remove(at);
    Ok(Applied::new(
        200,
        kind.actions()[2],
        format!("namespaces/{ns}/{}/{id}", kind.plural()),
        Value::Null,
    ))
}
