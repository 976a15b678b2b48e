//! `GET …/models` and `GET …/models/{id}` in a routing location, answered by the gateway: the
//! models the calling namespace may use, instead of whatever the first provider would list.
//!
//! The rule (README "Models list"): a model is listed when it is named exactly (no `*` or
//! `?`) by a route that serves the list's API root for the namespace, or by the namespace's
//! `models` policy, and when such a route serves it (a route without `models` serves every
//! model) and the namespace's `models` policies allow it. Globs are never expanded: a route
//! for `gpt-4o*` lists nothing by itself, but lists `gpt-4o-mini` when the namespace's
//! policy allows that name exactly. A route serves the root `/v1` when its `path_prefix` and
//! `/v1/` overlap (`/v1/`, `/v1/messages`, `/`).
//!
//! OpenAI's shape by default; Anthropic's (`type: "model"`, `display_name`, `created_at`,
//! `has_more`, `first_id`, `last_id`, paged with `limit`, `after_id`, `before_id`) for
//! Anthropic's clients (see [`ErrorShape::of_request`]).

use serde_json::{json, Value};

use super::config::{GatewayConfig, Namespace};
use super::error::GatewayError;
use super::error_shape::ErrorShape;
use super::policy::engine::model_allowed;
use super::policy::glob::any_matches;
use super::policy::Rule;
use super::routing::Route;

/// A request for the model list or for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelsAsk<'a> {
    /// `{root}/models`.
    List { root: &'a str },
    /// `{root}/models/{id}` (an id may hold slashes: `meta-llama/Llama-3.1-8B`).
    Get { root: &'a str, id: &'a str },
}

impl<'a> ModelsAsk<'a> {
    /// The ask of a `GET` to `path` (`$uri`), if it is one.
    pub fn of(path: &'a str) -> Option<ModelsAsk<'a>> {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if let Some(root) = trimmed.strip_suffix("/models") {
            return Some(ModelsAsk::List { root });
        }
        let at = trimmed.find("/models/")?;
        Some(ModelsAsk::Get {
            root: &trimmed[..at],
            id: &trimmed[at + "/models/".len()..],
        })
    }

    fn root(&self) -> &'a str {
        match self {
            ModelsAsk::List { root } | ModelsAsk::Get { root, .. } => root,
        }
    }
}

/// Anthropic's paging arguments, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Page<'a> {
    pub limit: Option<&'a str>,
    pub after_id: Option<&'a str>,
    pub before_id: Option<&'a str>,
}

/// A model the namespace may use, and the provider type of the route that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub owned_by: &'static str,
}

fn serves_root(route: &Route, root: &str) -> bool {
    let dir = format!("{root}/");
    route.path_prefix.starts_with(&dir) || dir.starts_with(&route.path_prefix)
}

/// The models `ns` may use under `root`, sorted by id.
pub fn available(config: &GatewayConfig, ns: &Namespace, root: &str) -> Vec<Listed> {
    let routing = &config.routing;
    let routes: Vec<&Route> = routing
        .routes
        .iter()
        .filter(|r| serves_root(r, root))
        .filter(|r| r.namespaces.is_empty() || r.namespaces.iter().any(|n| *n == ns.code))
        .collect();
    let mut names: Vec<&str> = routes
        .iter()
        .flat_map(|r| r.models.iter())
        .filter(|g| g.is_literal())
        .map(|g| g.as_str())
        .collect();
    for p in ns.policies.iter().filter(|p| !p.dry_run) {
        if let Rule::Models { allow } = &p.rule {
            names.extend(allow.iter().filter(|g| g.is_literal()).map(|g| g.as_str()));
        }
    }
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|m| model_allowed(&ns.policies, m))
        .filter_map(|m| {
            let route = routes
                .iter()
                .find(|r| r.models.is_empty() || any_matches(&r.models, m))?;
            let first = route.targets.first().map(|(t, _)| *t);
            let owned_by = first
                .or(route.fallback.first().copied())
                .and_then(|t| routing.targets.get(t))
                .map_or("gateway", |t| t.provider.as_str());
            Some(Listed {
                id: m.to_string(),
                owned_by,
            })
        })
        .collect()
}

/// The answer's body, or the error to answer (an unknown or not allowed model is 404, a
/// bad `limit` 400).
pub fn answer(
    config: &GatewayConfig,
    ns: Option<&Namespace>,
    ask: ModelsAsk<'_>,
    shape: ErrorShape,
    page: &Page<'_>,
) -> Result<Vec<u8>, GatewayError> {
    let models = ns.map_or_else(Vec::new, |ns| available(config, ns, ask.root()));
    let value = match ask {
        ModelsAsk::Get { id, .. } => {
            let m = models
                .iter()
                .find(|m| m.id == id)
                .ok_or(GatewayError::NoRoute)?;
            object(m, shape)
        }
        ModelsAsk::List { .. } => match shape {
            ErrorShape::OpenAi => json!({
                "object": "list",
                "data": models.iter().map(|m| object(m, shape)).collect::<Vec<_>>(),
            }),
            ErrorShape::Anthropic => anthropic_page(&models, page)?,
        },
    };
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    Ok(body)
}

fn object(m: &Listed, shape: ErrorShape) -> Value {
    match shape {
        // the config has no dates: the epoch, rather than a time that changes per answer
        ErrorShape::OpenAi => json!({
            "id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by,
        }),
        ErrorShape::Anthropic => json!({
            "type": "model", "id": m.id, "display_name": m.id,
            "created_at": "1970-01-01T00:00:00Z",
        }),
    }
}

/// Anthropic's list: `limit` (1 to 1000, default 20) models after `after_id` or before
/// `before_id`.
fn anthropic_page(models: &[Listed], page: &Page<'_>) -> Result<Value, GatewayError> {
    let limit = match page.limit {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or(GatewayError::InvalidField {
                param: "limit",
                expected: "an integer from 1 to 1000",
            })?,
    };
    let position = |id: &str| models.iter().position(|m| m.id == id);
    let (start, end, more) = match (page.after_id, page.before_id) {
        (_, Some(before)) => {
            let end = position(before).unwrap_or(0);
            let start = end.saturating_sub(limit);
            (start, end, start > 0)
        }
        (Some(after), None) => {
            let start = position(after).map_or(models.len(), |i| i + 1);
            let end = (start + limit).min(models.len());
            (start, end, end < models.len())
        }
        (None, None) => {
            let end = limit.min(models.len());
            (0, end, end < models.len())
        }
    };
    let slice = &models[start..end];
    Ok(json!({
        "data": slice.iter().map(|m| object(m, ErrorShape::Anthropic)).collect::<Vec<_>>(),
        "has_more": more,
        "first_id": slice.first().map(|m| m.id.as_str()),
        "last_id": slice.last().map(|m| m.id.as_str()),
    }))
}

#[cfg(test)]
mod tests;
