//! A single resource of the state of record, found by its endpoint: what the API shows of
//! it, and the ETag a write's `If-Match` is compared with.

use serde_json::Value;

use super::endpoint::Endpoint;
use super::error::ApiError;
use super::ops::ItemKind;
use super::state::State;
use super::views::{self, config_etag, etag};

/// A resource as the API shows it, or 404.
pub fn view_of(state: &State, ep: &Endpoint, now: i64) -> Result<Value, ApiError> {
    let ns_of = |code: &str| {
        state
            .namespace(code)
            .ok_or_else(|| ApiError::not_found("namespace", code))
    };
    match ep {
        Endpoint::Namespace(code) => Ok(views::namespace(ns_of(code)?)),
        Endpoint::Key(code, id) | Endpoint::KeyRotate(code, id) => {
            let k = ns_of(code)?
                .keys
                .get(id)
                .ok_or_else(|| ApiError::not_found("key", id))?;
            Ok(views::key(code, k, now))
        }
        Endpoint::Item(kind, code, id) => {
            let ns = ns_of(code)?;
            let list = match kind {
                ItemKind::Matcher => &ns.matchers,
                ItemKind::Policy => &ns.policies,
            };
            list.iter()
                .enumerate()
                .find(|(_, i)| i.id == *id)
                .map(|(p, i)| views::item(code, p, i))
                .ok_or_else(|| ApiError::not_found(kind.singular(), &id.to_string()))
        }
        Endpoint::Target(name) => state
            .targets
            .get(name)
            .map(views::target)
            .ok_or_else(|| ApiError::not_found("target", name)),
        Endpoint::Route(name) => state
            .route_index(name)
            .map(|i| views::route(i, &state.routes[i]))
            .ok_or_else(|| ApiError::not_found("route", name)),
        Endpoint::Settings => Ok(views::settings(state)),
        _ => Err(ApiError::internal("not a single resource")),
    }
}

/// The ETag a write's `If-Match` is compared with: the resource's, or (collections, the
/// whole configuration) the config version's. `None`: the resource does not exist.
pub fn etag_for(state: &State, version: u64, ep: &Endpoint, now: i64) -> Option<String> {
    match ep {
        Endpoint::Namespace(_)
        | Endpoint::Key(..)
        | Endpoint::KeyRotate(..)
        | Endpoint::Item(..)
        | Endpoint::Target(_)
        | Endpoint::Route(_)
        | Endpoint::Settings => view_of(state, ep, now).ok().map(|v| etag(&v)),
        _ => Some(config_etag(version)),
    }
}
