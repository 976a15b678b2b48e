//! The access decision of a gateway request, as one pure function over the request's facts:
//! parse the body, identify the namespace, run its policies (taking from the shared counters
//! through [`Env`]), choose the route and the attempt order, and say what the body sent
//! upstream becomes. The nginx layer gathers the facts, calls [`decide`], and maps the
//! [`Decision`] onto the request (status, context, logs, new body).
//!
//! Failover after an attempt ([`failover`]) and the outcome of attempts ([`record_attempt`])
//! are decided here too.

pub mod cluster;
pub mod failover;
pub mod finish;
mod prompt;
mod view;

use std::borrow::Cow;

use super::cluster::ask::Ask;
use super::cluster::Node;
use super::config::{GatewayConfig, Namespace};
use super::error::GatewayError;
use super::error_shape::ErrorShape;
use super::identify::{identify, ClientKey, Via};
use super::models_list::{self, ModelsAsk, Page};
use super::policy::clamp::{clamp_output, output_field};
use super::policy::slot::Shape;
use super::policy::{admit, precheck, Denial, Facts, RateHeaders, Table, Take};
use super::request::{parse_request_text, RequestSummary};
use super::routing::health::{health_key, is_cooling, record_failure, record_success};
use super::routing::{attempt_order, Route};
use super::tokens::PromptCount;
use super::usage::{request_usage, request_usage_at};

pub use prompt::BodyPrompt;
pub use view::{BodyView, Incoming};

/// What the nginx layer knows of a request whose body has been read.
pub struct Request<'a> {
    pub body: &'a [u8],
    /// The `Content-Type` says JSON.
    pub json_content_type: bool,
    /// The client key the request presented, hashed.
    pub key: Option<ClientKey>,
    /// `$uri` (decoded path).
    pub uri: &'a [u8],
    /// The location routes its requests (`ai_gateway_route on`).
    pub routed: bool,
    /// The method is GET (or HEAD).
    pub get: bool,
    /// The location asks OpenAI streams for their usage (`ai_gateway_stream_usage`).
    pub stream_usage: bool,
    /// The node's cluster limits (`ai_gateway_cluster_limits`).
    pub cluster: Option<&'a Node>,
}

/// What the pipeline needs besides the request: the clock, the shared counter table, the
/// worker's routing rotation.
pub trait Env {
    fn now_ms(&self) -> u64;
    /// Runs `f` on the limit table, under its lock; `None` when there is no table.
    fn with_table<T>(&mut self, f: impl FnOnce(&mut Table) -> T) -> Option<T>;
    /// The request's turn in route `index`'s weighted rotation (per worker).
    fn next_turn(&mut self, route: &Route, index: usize) -> u64;
}

/// Where a routed request is in its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteState {
    pub route: usize,
    /// Target indexes to try, in order.
    pub order: Vec<usize>,
    /// Index into `order` of the current attempt.
    pub attempt: usize,
    /// nginx's `uri_changes` when the request was last sent upstream (0: not sent yet); a
    /// lower value later means it came back through `error_page`.
    pub uri_changes: u32,
    /// The last provider's `Retry-After` (for the gateway's 429 when every target failed).
    pub retry_after_s: Option<u64>,
    /// The target whose in-flight count this request's current attempt holds.
    pub holding: Option<usize>,
}

impl RouteState {
    /// A request routed by `route`, to try `order`, before its first attempt.
    pub fn new(route: usize, order: Vec<usize>) -> RouteState {
        RouteState {
            route,
            order,
            attempt: 0,
            uri_changes: 0,
            retry_after_s: None,
            holding: None,
        }
    }

    /// The target of the current attempt.
    pub fn target(&self) -> Option<usize> {
        self.order.get(self.attempt).copied()
    }
}

/// What the policies decided and took.
#[derive(Debug, Default)]
pub struct PolicyOutcome {
    /// Counters taken (given back or settled later); empty when nothing was taken.
    pub takes: Vec<Take>,
    pub headers: RateHeaders,
    pub retry_after_s: Option<u64>,
    /// The policy that refused the request, or that would have (dry run).
    pub policy: Option<String>,
    /// The reason a dry-run policy would have refused with.
    pub dry_run: Option<&'static str>,
    /// Every reason a dry-run policy would have refused with (for the metrics).
    pub dry_run_reasons: Vec<&'static str>,
    /// The output cap a stream is ended at.
    pub output_cap: Option<u64>,
    /// Refusals and dry-run refusals, in the order they happened, for the log.
    pub denials: Vec<Denial>,
}

/// The outcome of the access decision.
#[derive(Debug)]
pub enum Verdict {
    /// Proxy the request (with `Decision::body` when set).
    Allow,
    /// Answer with this error. `logged`: the policies' denials say why (the nginx layer
    /// logs those instead of a generic rejection line).
    Reject { error: GatewayError, logged: bool },
    /// The gateway answers itself, 200 with this JSON (the model list).
    Answer(Vec<u8>),
}

#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    pub namespace: Option<usize>,
    pub via: Option<Via>,
    pub summary: Option<RequestSummary>,
    pub policy: PolicyOutcome,
    /// Whether a table was used (counters taken must be given back through it).
    pub took_counters: bool,
    /// The gateway's own count of the prompt, when a policy needed it.
    pub prompt: Option<Option<PromptCount>>,
    pub route: Option<RouteState>,
    /// The body to send upstream instead of the client's.
    pub body: Option<Vec<u8>>,
    /// `stream_options.include_usage` was added to the body (the response filter takes
    /// the usage chunk back out).
    pub added_include_usage: bool,
    /// Cluster counters still to take in Redis: the verdict (Allow so far, with the zone's
    /// counters taken) stands only if Redis admits too (see [`cluster`]).
    pub ask: Option<Box<Ask>>,
}

impl Decision {
    fn new() -> Decision {
        Decision {
            verdict: Verdict::Allow,
            namespace: None,
            via: None,
            summary: None,
            policy: PolicyOutcome::default(),
            took_counters: false,
            prompt: None,
            route: None,
            body: None,
            added_include_usage: false,
            ask: None,
        }
    }

    fn reject(mut self, error: GatewayError, logged: bool) -> Decision {
        self.verdict = Verdict::Reject { error, logged };
        self
    }
}

/// Decides a request: identification first (an unidentified client learns nothing about its
/// body), then the body's validity, the namespace's policies, the route.
pub fn decide<I: Incoming, E: Env>(
    config: &GatewayConfig,
    req: &Request,
    incoming: &I,
    env: &mut E,
) -> Decision {
    let mut d = Decision::new();
    let parsed = parse_request_text(req.body, req.json_content_type);
    let view = BodyView::new(
        incoming,
        parsed
            .as_ref()
            .is_ok_and(|(s, _)| s.is_json)
            .then_some(req.body),
    );
    let id = match identify(config, req.key.as_ref(), &view, env.now_ms()) {
        Ok(id) => id,
        Err(rejected) => {
            if let Some(found) = rejected.found {
                d.namespace = Some(found.namespace);
                d.via = Some(found.via);
            }
            return d.reject(rejected.error, false);
        }
    };
    d.namespace = Some(id.namespace);
    d.via = Some(id.via);
    if req.get && req.routed && !config.routing.is_empty() {
        let path = String::from_utf8_lossy(req.uri);
        if let Some(ask) = ModelsAsk::of(&path) {
            return list_models(config, id.namespace, ask, incoming, d);
        }
    }
    let (summary, text) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return d.reject(err, false),
    };
    let clamped = match enforce(
        config.namespaces.get(id.namespace),
        req,
        text,
        &summary,
        &view,
        env,
        &mut d,
    ) {
        Ok(body) => body,
        Err(err) => {
            d.summary = Some(summary);
            return d.reject(err, true);
        }
    };
    if req.routed && !config.routing.is_empty() {
        let path = String::from_utf8_lossy(req.uri);
        let namespace = config
            .namespaces
            .get(id.namespace)
            .map_or("", |n| n.code.as_str());
        match choose(config, env, &path, summary.model.as_deref(), namespace) {
            Some(state) => d.route = Some(state),
            None => {
                d.summary = Some(summary);
                return d.reject(GatewayError::NoRoute, false);
            }
        }
    }
    let was_clamped = clamped.is_some();
    let body: Cow<[u8]> = match clamped {
        Some(b) => Cow::Owned(b),
        None => Cow::Borrowed(req.body),
    };
    // an OpenAI stream without usage: ask the provider for it
    let with_usage = (summary.stream && req.stream_usage && is_openai_stream_path(req.uri))
        .then(|| match (was_clamped, text) {
            // the lowered body was written anew: read it again
            (false, Some(text)) => request_usage_at(text, summary.spans.stream_options),
            _ => request_usage(&body),
        })
        .flatten();
    d.added_include_usage = with_usage.is_some();
    d.body = match with_usage {
        Some(b) => Some(b),
        None if was_clamped => Some(body.into_owned()),
        None => None,
    };
    d.summary = Some(summary);
    d
}

/// The gateway's answer to `GET …/models[/{id}]` (see [`crate::core::models_list`]): no
/// policy counts it (nothing is sent to a provider), identification still applies.
fn list_models<I: Incoming>(
    config: &GatewayConfig,
    namespace: usize,
    ask: ModelsAsk<'_>,
    incoming: &I,
    d: Decision,
) -> Decision {
    let shape = ErrorShape::of_request(b"", incoming.header("anthropic-version").is_some());
    let (limit, after_id, before_id) = (
        incoming.query_arg("limit"),
        incoming.query_arg("after_id"),
        incoming.query_arg("before_id"),
    );
    let page = Page {
        limit: limit.as_deref(),
        after_id: after_id.as_deref(),
        before_id: before_id.as_deref(),
    };
    match models_list::answer(config, config.namespaces.get(namespace), ask, shape, &page) {
        Ok(body) => Decision {
            verdict: Verdict::Answer(body),
            ..d
        },
        Err(error) => d.reject(error, false),
    }
}

/// OpenAI's chat completions and (legacy) completions: the APIs with
/// `stream_options.include_usage`.
pub fn is_openai_stream_path(uri: &[u8]) -> bool {
    let path = uri.strip_suffix(b"/").unwrap_or(uri);
    path.ends_with(b"/completions")
}

/// Runs the namespace's policies; `Ok` with a new body when the output limit was lowered.
/// What was decided and taken goes into `d.policy`.
fn enforce<I: Incoming, E: Env>(
    ns: Option<&Namespace>,
    req: &Request,
    text: Option<&str>,
    summary: &RequestSummary,
    view: &BodyView<I>,
    env: &mut E,
    d: &mut Decision,
) -> Result<Option<Vec<u8>>, GatewayError> {
    let Some(ns) = ns else {
        return Ok(None);
    };
    if ns.policies.is_empty() {
        return Ok(None);
    }
    let state = &mut d.policy;
    let model = summary.model.as_deref();
    let facts = Facts {
        namespace: &ns.code,
        model,
        max_output: summary.max_output(),
        view,
        cluster: req.cluster.map(|n| &n.defaults),
    };
    let mut prompt = BodyPrompt::new(text, &summary.spans, model);
    let mut plan = match precheck(&ns.policies, &facts, &mut prompt) {
        Ok(plan) => plan,
        Err(denial) => {
            state.policy = Some(denial.policy.clone());
            let error = denial.error.clone();
            state.denials.push(denial);
            return Err(error);
        }
    };
    for dry in &plan.dry_run {
        state.dry_run_reasons.push(dry.error.reason());
        state.denials.push(dry.clone());
    }
    if let Some(first) = plan.dry_run.first() {
        state.policy = Some(first.policy.clone());
        state.dry_run = Some(first.error.reason());
    }
    if plan.needs_zone() {
        let now = env.now_ms();
        let mut outcome = env
            .with_table(|t| admit(&ns.policies, &plan, t, now))
            .ok_or(GatewayError::Http(500))?;
        if outcome.as_ref().is_err_and(|r| r.exact_needed) {
            // a token counter had no room for the prompt's upper bound: count it exactly
            // (outside the lock) and ask again
            plan.use_exact_prompt(prompt.exact_count());
            outcome = env
                .with_table(|t| admit(&ns.policies, &plan, t, now))
                .ok_or(GatewayError::Http(500))?;
        }
        match outcome {
            Ok(admission) => {
                for dry in admission.dry_run.iter().skip(plan.dry_run.len()) {
                    state.dry_run_reasons.push(dry.error.reason());
                    state.denials.push(dry.clone());
                    if state.policy.is_none() {
                        state.policy = Some(dry.policy.clone());
                        state.dry_run = Some(dry.error.reason());
                    }
                }
                d.took_counters = true;
                state.takes = admission.takes;
                state.headers = admission.headers;
            }
            Err(refusal) => {
                for dry in refusal.dry_run.iter().skip(plan.dry_run.len()) {
                    state.denials.push(dry.clone());
                }
                let denial = refusal.denial;
                state.headers = refusal.headers;
                state.retry_after_s = denial.retry_after_s;
                state.policy = Some(denial.policy.clone());
                state.dry_run = None;
                let error = denial.error.clone();
                state.denials.push(denial);
                return Err(error);
            }
        }
    }
    if plan.remote_charges().next().is_some() {
        // token counters in Redis are charged the prompt's bound, as the zone's are: a
        // refusal is asked again with the exact count (`Ask::needs_exact_prompt`)
        if let Some(node) = req.cluster {
            d.ask = Ask::new(&node.prefix, &ns.code, &ns.policies, &plan).map(Box::new);
        }
    }
    let state = &mut d.policy;
    state.output_cap = plan.output_cap;
    d.prompt = prompt.counted();
    Ok(plan
        .clamp_output
        .and_then(|cap| clamp_output(req.body, cap, output_field(req.uri))))
}

/// Chooses the route and the attempt order: targets cooling down go last. `None` when the
/// config has routes and none serves the request.
fn choose<E: Env>(
    config: &GatewayConfig,
    env: &mut E,
    path: &str,
    model: Option<&str>,
    namespace: &str,
) -> Option<RouteState> {
    let routing = &config.routing;
    let route = routing.route_for(path, model, namespace)?;
    let turn = env.next_turn(&routing.routes[route], route);
    let mut order = attempt_order(&routing.routes[route], turn);
    let now = env.now_ms();
    let cooling: Vec<bool> = env
        .with_table(|t| {
            order
                .iter()
                .map(|i| {
                    routing.targets.get(*i).is_some_and(|target| {
                        t.find(health_key(target))
                            .and_then(|r| t.get(r))
                            .is_some_and(|slot| is_cooling(slot, now))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if cooling.iter().any(|c| *c) {
        let (mut ok, cool): (Vec<_>, Vec<_>) = order
            .iter()
            .zip(cooling.iter().chain(std::iter::repeat(&false)))
            .partition(|(_, c)| !**c);
        ok.extend(cool);
        order = ok.into_iter().map(|(i, _)| *i).collect();
    }
    Some(RouteState::new(route, order))
}

/// Records an attempt's outcome in the target's passive health; returns the cool-down (ms)
/// a failure started, if any.
pub fn record_attempt<E: Env>(
    config: &GatewayConfig,
    env: &mut E,
    target: usize,
    failed: bool,
    retry_after_s: Option<u64>,
) -> Option<u64> {
    let t = config.routing.targets.get(target)?;
    let now = env.now_ms();
    env.with_table(|table| {
        let slot_ref = table.lookup(health_key(t), Shape::Health, now)?;
        let slot = table.get(slot_ref)?;
        if failed {
            record_failure(slot, t, now, retry_after_s.map(|s| s * 1000))
        } else {
            record_success(slot, now);
            None
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests;
