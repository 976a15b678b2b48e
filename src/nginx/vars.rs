//! `$ai_gateway_*` variables, for `log_format`, `proxy_set_header`, `add_header`, `map`...
//! They are not cacheable: their values appear as the request moves through the phases.

use ngx::ffi::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_int_t, ngx_pnalloc, ngx_str_t,
    ngx_variable_value_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX, NGX_OK,
};

use super::ctx::{self, Phase, RequestCtx};
use super::guard::guard;
use super::route::{self, RouteVar};
use super::usage;
use crate::core::identify::ClientKey;

#[derive(Clone, Copy)]
enum Var {
    Namespace,
    NamespaceName,
    KeyId,
    IdentifiedBy,
    Model,
    Stream,
    MaxTokens,
    BodyBytes,
    Decision,
    Reason,
    PromptTokens,
    CompletionTokens,
    TotalTokens,
    CachedTokens,
    ReasoningTokens,
    UsageSource,
    Policy,
    DryRun,
    Route(RouteVar),
    RequestId,
}

const VARIABLES: [(&str, Var); 22] = [
    ("ai_gateway_namespace", Var::Namespace),
    ("ai_gateway_namespace_name", Var::NamespaceName),
    ("ai_gateway_key_id", Var::KeyId),
    ("ai_gateway_identified_by", Var::IdentifiedBy),
    ("ai_gateway_model", Var::Model),
    ("ai_gateway_stream", Var::Stream),
    ("ai_gateway_max_tokens", Var::MaxTokens),
    ("ai_gateway_body_bytes", Var::BodyBytes),
    ("ai_gateway_decision", Var::Decision),
    ("ai_gateway_reason", Var::Reason),
    ("ai_gateway_prompt_tokens", Var::PromptTokens),
    ("ai_gateway_completion_tokens", Var::CompletionTokens),
    ("ai_gateway_total_tokens", Var::TotalTokens),
    ("ai_gateway_cached_tokens", Var::CachedTokens),
    ("ai_gateway_reasoning_tokens", Var::ReasoningTokens),
    ("ai_gateway_usage_source", Var::UsageSource),
    ("ai_gateway_policy", Var::Policy),
    ("ai_gateway_dry_run", Var::DryRun),
    ("ai_gateway_route", Var::Route(RouteVar::Route)),
    ("ai_gateway_target", Var::Route(RouteVar::Target)),
    ("ai_gateway_attempts", Var::Route(RouteVar::Attempts)),
    ("ai_gateway_request_id", Var::RequestId),
];

/// `$ai_gateway_upstream_<name>`: one prefix variable (nginx passes the full name), so the
/// eight of them take no room in nginx's variables hash.
const UPSTREAM_PREFIX: &str = "ai_gateway_upstream_";
const UPSTREAM_VARIABLES: [(&str, RouteVar); 8] = [
    ("scheme", RouteVar::Scheme),
    ("host", RouteVar::Host),
    ("sni", RouteVar::Sni),
    ("uri", RouteVar::Uri),
    ("authorization", RouteVar::Authorization),
    ("api_key", RouteVar::ApiKey),
    ("x_api_key", RouteVar::XApiKey),
    ("anthropic_version", RouteVar::AnthropicVersion),
];

/// Registers the variables (called from preconfiguration).
///
/// # Safety
/// `cf` must be the configuration being parsed.
pub unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    for (index, (name, _)) in VARIABLES.iter().enumerate() {
        let mut n = ngx_str_t {
            len: name.len(),
            data: name.as_ptr().cast_mut(),
        };
        // SAFETY: nginx copies the name; the returned variable lives in the cycle.
        unsafe {
            let v = ngx_http_add_variable(cf, &mut n, NGX_HTTP_VAR_NOCACHEABLE as _);
            if v.is_null() {
                return NGX_ERROR as ngx_int_t;
            }
            (*v).get_handler = Some(ngx_http_ai_gateway_variable);
            (*v).data = index;
        }
    }
    let mut n = ngx_str_t {
        len: UPSTREAM_PREFIX.len(),
        data: UPSTREAM_PREFIX.as_ptr().cast_mut(),
    };
    // SAFETY: as above; a prefix variable's handler gets the full name as data.
    unsafe {
        let v = ngx_http_add_variable(
            cf,
            &mut n,
            (NGX_HTTP_VAR_NOCACHEABLE | NGX_HTTP_VAR_PREFIX) as _,
        );
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        (*v).get_handler = Some(ngx_http_ai_gateway_upstream_variable);
        (*v).data = 0;
    }
    NGX_OK as ngx_int_t
}

/// Handler of the `$ai_gateway_upstream_*` prefix variable.
unsafe extern "C" fn ngx_http_ai_gateway_upstream_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request, a value slot and (for a prefix variable) the
    // ngx_str_t of the name being read.
    let log = unsafe { (*(*r).connection).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe {
        let name = (data as *const ngx_str_t).as_ref().map(|n| n.as_bytes());
        let which = name
            .and_then(|n| n.strip_prefix(UPSTREAM_PREFIX.as_bytes()))
            .and_then(|suffix| {
                UPSTREAM_VARIABLES
                    .iter()
                    .find(|(s, _)| s.as_bytes().eq_ignore_ascii_case(suffix))
            })
            .map(|(_, var)| *var);
        let main = (*r).main;
        let ctx = ctx::get(main);
        let text = which.and_then(|var| route::variable(main, ctx?, var));
        set_value(r, v, text.as_deref())
    })
}

/// The value of a variable for a request context; `None` prints as `-` in logs.
///
/// # Safety
/// `r` must be the live main request of `ctx`.
unsafe fn value(r: *mut ngx_http_request_t, ctx: &mut RequestCtx, var: Var) -> Option<String> {
    let tokens = matches!(
        var,
        Var::PromptTokens
            | Var::CompletionTokens
            | Var::TotalTokens
            | Var::CachedTokens
            | Var::ReasoningTokens
            | Var::UsageSource
    );
    if tokens {
        if ctx.snapshot.is_none() || !ctx.allowed() {
            return None;
        }
        // SAFETY: r is live (caller).
        let u = unsafe { usage::current(r, ctx) };
        return match var {
            Var::PromptTokens => u.prompt,
            Var::CompletionTokens => u.completion,
            Var::TotalTokens => u.total(),
            Var::CachedTokens => u.cached,
            Var::ReasoningTokens => u.reasoning,
            _ => return Some(u.source_str().to_string()),
        }
        .map(|n| n.to_string());
    }
    let summary = ctx.summary.as_ref();
    match var {
        Var::Namespace => ctx.namespace_code().map(str::to_string),
        Var::NamespaceName => ctx.namespace_name().map(str::to_string),
        Var::KeyId => ctx.key.as_ref().map(ClientKey::id),
        Var::RequestId => {
            let id = super::usage_log::request_id(ctx);
            Some(String::from_utf8_lossy(&id).into_owned())
        }
        Var::IdentifiedBy => ctx.via.map(|v| v.as_str().to_string()),
        Var::Model => summary.and_then(|s| s.model.clone()),
        Var::Stream => summary.map(|s| if s.stream { "true" } else { "false" }.to_string()),
        Var::MaxTokens => summary.and_then(|s| s.max_output()).map(|n| n.to_string()),
        Var::BodyBytes => summary.map(|s| s.body_bytes.to_string()),
        Var::Decision => match ctx.phase {
            Phase::Decided if ctx.allowed() => Some("allowed".to_string()),
            Phase::Decided => Some("rejected".to_string()),
            _ if ctx.rendered.is_some() => Some("rejected".to_string()),
            _ => None,
        },
        Var::Reason => match (&ctx.error, &ctx.rendered) {
            (Some(e), _) => Some(e.reason().to_string()),
            (None, Some(e)) if ctx.phase != Phase::Decided => Some(e.reason().to_string()),
            _ => None,
        },
        // SAFETY: r is live (caller).
        Var::Route(v) => unsafe { route::variable(r, ctx, v).map(|t| t.into_owned()) },
        Var::Policy => ctx.policy.as_ref().and_then(|p| p.policy.clone()),
        Var::DryRun => ctx
            .policy
            .as_ref()
            .and_then(|p| p.dry_run)
            .map(str::to_string),
        _ => None,
    }
}

unsafe extern "C" fn ngx_http_ai_gateway_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and a value slot to fill.
    let log = unsafe { (*(*r).connection).log };
    guard(log, NGX_ERROR as ngx_int_t, || unsafe {
        let main = (*r).main;
        let found = VARIABLES
            .get(data)
            .and_then(|(_, var)| ctx::get(main).and_then(|c| value(main, c, *var)));
        set_value(r, v, found.as_deref())
    })
}

/// Fills a variable's value from `text` (copied into the request pool), or marks it not found.
///
/// # Safety
/// `r` and `v` as nginx passes them to a variable handler.
unsafe fn set_value(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    text: Option<&str>,
) -> ngx_int_t {
    // SAFETY: pool allocation of the request; v is the slot nginx gave.
    unsafe {
        let Some(text) = text else {
            (*v).set_not_found(1);
            return NGX_OK as ngx_int_t;
        };
        let p = ngx_pnalloc((*r).pool, text.len().max(1)) as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), p, text.len());
        (*v).data = p;
        (*v).set_len(text.len() as u32);
        (*v).set_valid(1);
        (*v).set_no_cacheable(1);
        (*v).set_not_found(0);
        NGX_OK as ngx_int_t
    }
}
