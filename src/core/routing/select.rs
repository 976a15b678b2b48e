//! Choosing targets, building the upstream URI, and the credential headers.

use super::{Provider, Route, Target};

/// The targets a request tries, in order: the weighted choice first (a smooth rotation over
/// the route's weights, so 3:1 gives A A B A, A A B A, ...), then the `fallback` targets, then
/// the route's other targets in declaration order; each once, at most `max_attempts`.
/// `turn` is the request's place in the route's rotation (see `worker::WorkerRouting`).
pub fn attempt_order(route: &Route, turn: u64) -> Vec<usize> {
    let total: u64 = route.targets.iter().map(|(_, w)| *w as u64).sum();
    let n = turn;
    let first = pick(&route.targets, total, n);
    let mut order = vec![first];
    let rest = route
        .fallback
        .iter()
        .copied()
        .chain(route.targets.iter().map(|(t, _)| *t));
    for t in rest {
        if order.len() >= route.max_attempts {
            break;
        }
        if !order.contains(&t) {
            order.push(t);
        }
    }
    order.truncate(route.max_attempts.max(1));
    order
}

/// The `n`-th choice of a smooth weighted rotation (nginx's weighted round robin, replayed
/// from the start: deterministic for a given `n`, spread out within each cycle).
fn pick(targets: &[(usize, u32)], total: u64, n: u64) -> usize {
    if targets.len() == 1 || total == 0 {
        return targets.first().map_or(0, |(t, _)| *t);
    }
    let step = n % total;
    let mut current: Vec<i64> = vec![0; targets.len()];
    let mut chosen = 0;
    for _ in 0..=step {
        for (c, (_, w)) in current.iter_mut().zip(targets) {
            *c += *w as i64;
        }
        chosen = (0..targets.len())
            .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
            .unwrap_or(0);
        current[chosen] -= total as i64;
    }
    targets[chosen].0
}

/// The URI sent to `target`: its base path, then the request path after the route's
/// `rewrite.from` (replaced by `rewrite.to`), then the query (plus Azure's `api-version`).
pub fn upstream_uri(route: &Route, target: &Target, path: &str, query: Option<&str>) -> String {
    let (head, rest) = match path.strip_prefix(route.rewrite_from.as_str()) {
        Some(r) => (route.rewrite_to.as_str(), r),
        None => ("", path),
    };
    let query = query.filter(|q| !q.is_empty());
    let api_version = match (&target.provider, &target.api_version) {
        (Provider::Azure, Some(v))
            if !query.is_some_and(|q| q.split('&').any(|a| a.starts_with("api-version="))) =>
        {
            Some(v.as_str())
        }
        _ => None,
    };
    let mut uri = String::with_capacity(
        target.base_path.len()
            + head.len()
            + rest.len()
            + query.map_or(0, |q| q.len() + 1)
            + api_version.map_or(0, |v| v.len() + 13),
    );
    uri.push_str(&target.base_path);
    uri.push_str(head);
    uri.push_str(rest);
    let mut sep = '?';
    if let Some(q) = query {
        uri.push(sep);
        uri.push_str(q);
        sep = '&';
    }
    if let Some(v) = api_version {
        uri.push(sep);
        uri.push_str("api-version=");
        uri.push_str(v);
    }
    uri
}

/// The headers that carry `secret` to a provider of this type (and Anthropic's version
/// header when the client did not send one).
pub fn credential_headers(
    target: &Target,
    secret: Option<&str>,
    client_sent_anthropic_version: bool,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match target.provider {
        Provider::OpenAi | Provider::OpenAiCompatible => {
            if let Some(s) = secret {
                out.push(("Authorization", format!("Bearer {s}")));
            }
        }
        Provider::Azure => {
            if let Some(s) = secret {
                out.push(("api-key", s.to_string()));
            }
        }
        Provider::Anthropic => {
            if let Some(s) = secret {
                out.push(("x-api-key", s.to_string()));
            }
            if !client_sent_anthropic_version {
                out.push((
                    "anthropic-version",
                    target
                        .api_version
                        .clone()
                        .unwrap_or_else(|| "2023-06-01".to_string()),
                ));
            }
        }
    }
    out
}
