//! Policies of a namespace as the JSON config states them (`namespaces[].policies[]`), and
//! their validation.
//!
//! ```json
//! {"type": "requests", "limit": 60, "window": "1m"}
//! {"type": "tokens", "limit": 100000, "window": "1m", "reserve_output": 512}
//! {"type": "quota", "limit": 2000000, "period": "day"}
//! {"type": "concurrency", "limit": 4, "per_model": true}
//! {"type": "input_tokens", "max": 8000}
//! {"type": "output_tokens", "max": 1024, "action": "clamp"}
//! {"type": "models", "allow": ["gpt-4o*", "claude-*"]}
//! {"type": "message", "source": "body", "field": "metadata.tag", "operator": "equals",
//!  "value": "internal", "action": "deny"}
//! ```
//! Every policy may also have `name`, `models` (globs: the policy applies to these models
//! only), `per_model` (one counter per model instead of one for the namespace) and `dry_run`;
//! counting policies also `mode`, `on_failure` and `fail_open_fraction` (`core::cluster`).

use serde_json::Value;

use super::cluster_mode::{parse_policy_cluster, PolicyCluster, POLICY_FIELDS};
use super::glob::Glob;
use super::slot::{Period, Shape};
use super::table::counter_key;
use crate::core::config_error::ConfigError;
use crate::core::fields::{at, duration_ms, err, flag, integer, object, required, string, Object};
use crate::core::matcher::{Matcher, Operator, Source};

/// One policy of a namespace.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `name`, or one made from the type and its settings; identifies the policy's counters
    /// (so a reload that changes a limit keeps them) and appears in logs.
    pub id: String,
    /// The policy applies to requests for these models only (empty: to every request).
    pub models: Vec<Glob>,
    pub per_model: bool,
    pub dry_run: bool,
    /// `mode`, `on_failure`, `fail_open_fraction` (counting policies; see `core::cluster`).
    pub cluster: PolicyCluster,
    pub rule: Rule,
    /// What defines the policy's counters: its id, its kind (requests or tokens) and its
    /// window or period, hashed once (see [`counter_identity`]).
    pub identity: u64,
}

/// The identity of a policy's counters: a snapshot that changes only a limit keeps it (and
/// the counts), one that changes the kind, the window or the name starts new counters.
pub fn counter_identity(id: &str, rule: &Rule) -> u64 {
    let (kind, shape): (&[u8], u64) = match rule {
        Rule::Concurrency { .. } => (b"concurrency", Shape::Concurrency.code()),
        Rule::Requests { window_ms, .. } => (b"requests", Shape::Window { ms: *window_ms }.code()),
        Rule::Tokens { window_ms, .. } => (b"tokens", Shape::Window { ms: *window_ms }.code()),
        Rule::Quota { period, tokens, .. } => (
            if *tokens { b"tokens" } else { b"requests" },
            Shape::Quota(*period).code(),
        ),
        _ => (b"", 0),
    };
    counter_key(&[id.as_bytes(), kind, &shape.to_le_bytes()])
}

/// What a policy checks.
#[derive(Debug, Clone)]
pub enum Rule {
    Models {
        allow: Vec<Glob>,
    },
    Message {
        matcher: Matcher,
        deny: bool,
    },
    InputTokens {
        max: u64,
    },
    OutputTokens {
        max: u64,
        clamp: bool,
    },
    Concurrency {
        limit: u64,
    },
    Requests {
        limit: u64,
        window_ms: u64,
    },
    Tokens {
        limit: u64,
        window_ms: u64,
        reserve_output: u64,
    },
    Quota {
        limit: u64,
        period: Period,
        tokens: bool,
    },
}

impl Rule {
    /// Evaluation rank (see [`super::engine`]): stateless checks first, then counters.
    pub fn rank(&self) -> u8 {
        match self {
            Rule::Models { .. } => 0,
            Rule::Message { .. } => 1,
            Rule::InputTokens { .. } => 2,
            Rule::OutputTokens { .. } => 3,
            Rule::Concurrency { .. } => 4,
            Rule::Requests { .. } => 5,
            Rule::Tokens { .. } => 6,
            Rule::Quota { .. } => 7,
        }
    }

    /// Whether the rule keeps counters in the limit zone.
    pub fn is_counter(&self) -> bool {
        self.rank() >= 4
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Rule::Models { .. } => "models",
            Rule::Message { .. } => "message",
            Rule::InputTokens { .. } => "input_tokens",
            Rule::OutputTokens { .. } => "output_tokens",
            Rule::Concurrency { .. } => "concurrency",
            Rule::Requests { .. } => "requests",
            Rule::Tokens { .. } => "tokens",
            Rule::Quota { .. } => "quota",
        }
    }
}

const COMMON: [&str; 5] = ["type", "name", "models", "per_model", "dry_run"];

/// Parses `namespaces[i].policies`, in evaluation order (by type, then as declared).
pub fn parse_policies(list: &[Value], path: &str) -> Result<Vec<Policy>, ConfigError> {
    let mut out: Vec<Policy> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let ppath = format!("{path}[{i}]");
        let policy = parse_policy(v, &ppath)?;
        if let Some(j) = out.iter().position(|p| p.id == policy.id) {
            return err(
                &ppath,
                format!(
                    "duplicate policy \"{}\" (also {path}[{j}]); give one a distinct \"name\"",
                    policy.id
                ),
            );
        }
        out.push(policy);
    }
    out.sort_by_key(|p| p.rule.rank());
    Ok(out)
}

fn parse_policy(v: &Value, path: &str) -> Result<Policy, ConfigError> {
    let obj = object(v, path)?;
    let kind = required(obj, path, "type")?;
    let (rule, extra): (Rule, &[&str]) = match kind {
        "models" => (
            Rule::Models {
                allow: globs(obj, path, "allow", true)?,
            },
            &["allow"],
        ),
        "message" => (parse_message(obj, path)?, &MESSAGE_FIELDS),
        "input_tokens" => (
            Rule::InputTokens {
                max: positive(obj, path, "max")?,
            },
            &["max"],
        ),
        "output_tokens" => (
            Rule::OutputTokens {
                max: positive(obj, path, "max")?,
                clamp: match string(obj, path, "action")? {
                    None | Some("clamp") => true,
                    Some("reject") => false,
                    Some(o) => {
                        return err(
                            &at(path, "action"),
                            format!("must be \"clamp\" or \"reject\", not \"{o}\""),
                        )
                    }
                },
            },
            &["max", "action"],
        ),
        "concurrency" => (
            Rule::Concurrency {
                limit: positive(obj, path, "limit")?,
            },
            &["limit"],
        ),
        "requests" => (
            Rule::Requests {
                limit: positive(obj, path, "limit")?,
                window_ms: window(obj, path)?,
            },
            &["limit", "window"],
        ),
        "tokens" => (
            Rule::Tokens {
                limit: positive(obj, path, "limit")?,
                window_ms: window(obj, path)?,
                reserve_output: integer(obj, path, "reserve_output", 0..=u64::MAX, Some(0))?,
            },
            &["limit", "window", "reserve_output"],
        ),
        "quota" => (
            Rule::Quota {
                limit: positive(obj, path, "limit")?,
                period: match string(obj, path, "period")? {
                    Some("day") => Period::Day,
                    Some("month") => Period::Month,
                    None => return err(&at(path, "period"), "is required"),
                    Some(o) => {
                        return err(
                            &at(path, "period"),
                            format!("must be \"day\" or \"month\", not \"{o}\""),
                        )
                    }
                },
                tokens: match string(obj, path, "unit")? {
                    None | Some("tokens") => true,
                    Some("requests") => false,
                    Some(o) => {
                        return err(
                            &at(path, "unit"),
                            format!("must be \"tokens\" or \"requests\", not \"{o}\""),
                        )
                    }
                },
            },
            &["limit", "period", "unit"],
        ),
        other => {
            return err(
                &at(path, "type"),
                format!(
                    "unknown policy type \"{other}\" (expected requests, tokens, quota, \
                     concurrency, input_tokens, output_tokens, models or message)"
                ),
            )
        }
    };
    for key in obj.keys() {
        let cluster_field = POLICY_FIELDS.contains(&key.as_str());
        if cluster_field && !rule.is_counter() {
            return err(
                &at(path, key),
                "only counting policies (requests, tokens, quota, concurrency) have a cluster mode",
            );
        }
        if !COMMON.contains(&key.as_str()) && !extra.contains(&key.as_str()) && !cluster_field {
            return err(&at(path, key), "unknown field");
        }
    }
    let name = string(obj, path, "name")?;
    if name.is_some_and(str::is_empty) {
        return err(&at(path, "name"), "must not be empty");
    }
    let models = globs(obj, path, "models", false)?;
    let per_model = flag(obj, path, "per_model")?;
    if per_model && !rule.is_counter() {
        return err(
            &at(path, "per_model"),
            "only counting policies (requests, tokens, quota, concurrency) have counters",
        );
    }
    let dry_run = flag(obj, path, "dry_run")?;
    let cluster = parse_policy_cluster(obj, path)?;
    let id = match name {
        Some(n) => n.to_string(),
        None => derived_id(&rule, &models, per_model),
    };
    Ok(Policy {
        identity: counter_identity(&id, &rule),
        id,
        models,
        per_model,
        dry_run,
        cluster,
        rule,
    })
}

/// `requests/60s`, `tokens/60s[gpt-4o*]`, `quota/day/tokens`, ...
fn derived_id(rule: &Rule, models: &[Glob], per_model: bool) -> String {
    let mut id = rule.type_name().to_string();
    match rule {
        Rule::Requests { window_ms, .. } | Rule::Tokens { window_ms, .. } => {
            id.push_str(&format!("/{}s", window_ms / 1000));
        }
        Rule::Quota { period, tokens, .. } => {
            id.push_str(match period {
                Period::Day => "/day",
                Period::Month => "/month",
            });
            id.push_str(if *tokens { "/tokens" } else { "/requests" });
        }
        _ => {}
    }
    if !models.is_empty() {
        let list: Vec<&str> = models.iter().map(Glob::as_str).collect();
        id.push_str(&format!("[{}]", list.join(",")));
    }
    if per_model {
        id.push_str("/per_model");
    }
    id
}

const MESSAGE_FIELDS: [&str; 5] = ["source", "field", "operator", "value", "action"];

fn parse_message(obj: &Object, path: &str) -> Result<Rule, ConfigError> {
    let field = match string(obj, path, "field")? {
        Some(f) if !f.is_empty() => f,
        Some(_) => return err(&at(path, "field"), "must not be empty"),
        None => return err(&at(path, "field"), "is required"),
    };
    let source = match string(obj, path, "source")? {
        Some("header") => Source::Header(field.to_ascii_lowercase()),
        Some("query") => Source::Query(field.to_string()),
        Some("body") | None => {
            let segs: Vec<String> = field.split('.').map(str::to_string).collect();
            if segs.iter().any(String::is_empty) {
                return err(&at(path, "field"), format!("invalid body path \"{field}\""));
            }
            Source::Body(segs)
        }
        Some(o) => {
            return err(
                &at(path, "source"),
                format!("must be \"header\", \"query\" or \"body\", not \"{o}\""),
            )
        }
    };
    let value = match obj.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return err(&at(path, "value"), "must be a string"),
        None => return err(&at(path, "value"), "is required"),
    };
    let op = string(obj, path, "operator")?.unwrap_or("equals");
    let operator = Operator::parse(op, &value).map_err(|message| ConfigError {
        path: at(path, if op == "regex" { "value" } else { "operator" }),
        message,
    })?;
    let deny = match string(obj, path, "action")? {
        Some("deny") => true,
        Some("allow") => false,
        None => return err(&at(path, "action"), "is required (\"allow\" or \"deny\")"),
        Some(o) => {
            return err(
                &at(path, "action"),
                format!("must be \"allow\" or \"deny\", not \"{o}\""),
            )
        }
    };
    Ok(Rule::Message {
        matcher: Matcher {
            source,
            operator,
            value,
            priority: 0,
            namespace: 0,
        },
        deny,
    })
}

fn positive(obj: &Object, path: &str, key: &str) -> Result<u64, ConfigError> {
    integer(obj, path, key, 1..=u64::MAX, None)
}

fn globs(obj: &Object, path: &str, key: &str, required: bool) -> Result<Vec<Glob>, ConfigError> {
    let list = match obj.get(key) {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        None | Some(Value::Null) => return err(&at(path, key), "is required"),
        Some(Value::Array(a)) => a,
        Some(_) => return err(&at(path, key), "must be an array of model globs"),
    };
    if list.is_empty() {
        return err(&at(path, key), "must not be empty");
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.is_empty() => Ok(Glob::new(s)),
            _ => err(&format!("{path}.{key}[{i}]"), "must be a non-empty string"),
        })
        .collect()
}

/// `window`: seconds as a number, or `"30s"`, `"1m"`, `"1h"`, `"1d"`; whole seconds, 1 s to
/// 31 days.
fn window(obj: &Object, path: &str) -> Result<u64, ConfigError> {
    let p = at(path, "window");
    let Some(v) = obj.get("window") else {
        return err(&p, "is required");
    };
    match duration_ms(v, 1000) {
        Some(ms) if ms % 1000 == 0 && (1000..=31 * 86_400_000).contains(&ms) => Ok(ms),
        _ => err(
            &p,
            "must be a number of seconds or \"<n>s\", \"<n>m\", \"<n>h\", \"<n>d\" (1s to 31d)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Vec<Policy>, String> {
        let Value::Array(list) = v else { panic!() };
        parse_policies(&list, "namespaces[0].policies").map_err(|e| e.to_string())
    }

    #[test]
    fn parses_every_type_in_evaluation_order() {
        let p = parse(json!([
            {"type": "quota", "limit": 1000, "period": "month"},
            {"type": "tokens", "limit": 500, "window": "1m", "reserve_output": 64},
            {"type": "requests", "limit": 10, "window": 1, "dry_run": true},
            {"type": "concurrency", "limit": 2, "per_model": true},
            {"type": "output_tokens", "max": 100, "action": "reject"},
            {"type": "input_tokens", "max": 1000, "models": ["gpt-*"]},
            {"type": "message", "source": "header", "field": "X-Tag", "operator": "equals",
             "value": "x", "action": "deny"},
            {"type": "models", "allow": ["gpt-4o*"], "name": "only-4o"}
        ]))
        .unwrap();
        let ids: Vec<&str> = p.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "only-4o",
                "message",
                "input_tokens[gpt-*]",
                "output_tokens",
                "concurrency/per_model",
                "requests/1s",
                "tokens/60s",
                "quota/month/tokens"
            ]
        );
        assert!(p[5].dry_run);
        assert!(matches!(
            p[6].rule,
            Rule::Tokens {
                limit: 500,
                window_ms: 60_000,
                reserve_output: 64
            }
        ));
        assert!(matches!(
            p[3].rule,
            Rule::OutputTokens {
                max: 100,
                clamp: false
            }
        ));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |v: Value| parse(json!([v])).unwrap_err();
        assert_eq!(
            e(json!({"type": "rate"})),
            "namespaces[0].policies[0].type: unknown policy type \"rate\" (expected requests, \
             tokens, quota, concurrency, input_tokens, output_tokens, models or message)"
        );
        assert_eq!(
            e(json!({"type": "requests", "limit": 0, "window": 1})),
            "namespaces[0].policies[0].limit: must be a positive integer"
        );
        assert_eq!(
            e(json!({"type": "requests", "limit": 5})),
            "namespaces[0].policies[0].window: is required"
        );
        assert!(e(json!({"type": "requests", "limit": 5, "window": "5x"}))
            .starts_with("namespaces[0].policies[0].window: must be"));
        assert_eq!(
            e(json!({"type": "requests", "limit": 5, "window": 1, "burst": 3})),
            "namespaces[0].policies[0].burst: unknown field"
        );
        assert_eq!(
            e(json!({"type": "models", "allow": []})),
            "namespaces[0].policies[0].allow: must not be empty"
        );
        assert_eq!(
            e(json!({"type": "message", "field": "a", "value": "b"})),
            "namespaces[0].policies[0].action: is required (\"allow\" or \"deny\")"
        );
        assert_eq!(
            e(json!({"type": "input_tokens", "max": 5, "per_model": true})),
            "namespaces[0].policies[0].per_model: only counting policies (requests, tokens, \
             quota, concurrency) have counters"
        );
        assert_eq!(
            e(json!({"type": "quota", "limit": 5, "period": "week"})),
            "namespaces[0].policies[0].period: must be \"day\" or \"month\", not \"week\""
        );
        assert_eq!(
            parse(json!([
                {"type": "requests", "limit": 5, "window": "1m"},
                {"type": "requests", "limit": 9, "window": 60}
            ]))
            .unwrap_err(),
            "namespaces[0].policies[1]: duplicate policy \"requests/60s\" (also \
             namespaces[0].policies[0]); give one a distinct \"name\""
        );
    }
}
