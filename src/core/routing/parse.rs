//! `targets` and `routes` of the JSON config, validated with JSON paths in errors.

use std::collections::HashMap;

use serde_json::Value;

use super::{Credential, Provider, Route, Routing, Target, DEFAULT_RETRY_STATUSES};
use crate::core::config_error::ConfigError;
use crate::core::fields::{
    array as list, at, duration_ms, err, header_text, integer, known, non_empty as required,
    object, string, token_problem,
};
use crate::core::policy::glob::Glob;
use crate::core::seal::check_format;

/// Parses the top-level `targets` and `routes`. `namespaces` are the codes routes may name.
pub fn parse_routing(
    targets: &[Value],
    routes: &[Value],
    namespaces: &[&str],
) -> Result<Routing, ConfigError> {
    let mut routing = Routing::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let path = format!("targets[{i}]");
        let target = parse_target(t, &path)?;
        if let Some(prev) = names.insert(target.name.clone(), i) {
            return err(
                &at(&path, "name"),
                format!(
                    "duplicate target name \"{}\" (also targets[{prev}])",
                    target.name
                ),
            );
        }
        routing.targets.push(target);
    }
    for (i, r) in routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let mut route = parse_route(r, &path, &names, namespaces)?;
        route.key = super::worker::route_key(&route, i);
        routing.routes.push(route);
    }
    Ok(routing)
}

fn parse_target(v: &Value, path: &str) -> Result<Target, ConfigError> {
    let obj = object(v, path)?;
    known(
        obj,
        path,
        &[
            "name",
            "provider",
            "base_url",
            "credential",
            "api_version",
            "description",
            "max_failures",
            "cooldown",
            "timeouts",
            "max_connections",
        ],
    )?;
    string(obj, path, "description")?;
    let name = required(obj, path, "name")?;
    header_text(name, &at(path, "name"))?;
    let provider = match required(obj, path, "provider")? {
        "openai" => Provider::OpenAi,
        "azure" => Provider::Azure,
        "anthropic" => Provider::Anthropic,
        "openai-compatible" => Provider::OpenAiCompatible,
        other => {
            return err(
                &at(path, "provider"),
                format!(
                    "unknown provider \"{other}\" (expected openai, azure, anthropic or \
                     openai-compatible)"
                ),
            )
        }
    };
    let url = required(obj, path, "base_url")?;
    let (https, host, port, base_path) = parse_base_url(url).map_err(|m| ConfigError {
        path: at(path, "base_url"),
        message: m,
    })?;
    let credential = match obj.get("credential") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            let cpath = at(path, "credential");
            known(c, &cpath, &["value", "env", "file", "sealed"])?;
            let set: Vec<(&str, &str)> = ["value", "env", "file", "sealed"]
                .iter()
                .filter_map(|k| c.get(*k).map(|v| (*k, v)))
                .map(|(k, v)| match v {
                    Value::String(s) if !s.is_empty() => Ok((k, s.as_str())),
                    _ => err(&at(&cpath, k), "must be a non-empty string"),
                })
                .collect::<Result<_, _>>()?;
            match set.as_slice() {
                [("value", s)] => {
                    if let Some(problem) = token_problem(s) {
                        return err(&at(&cpath, "value"), format!("the key {problem}"));
                    }
                    Some(Credential::Inline(s.to_string()))
                }
                [("env", s)] => Some(Credential::Env(s.to_string())),
                [("file", s)] => Some(Credential::File(s.to_string())),
                [("sealed", s)] => {
                    // opened when the snapshot is made, with the node's keys
                    check_format(s).map_err(|message| ConfigError {
                        path: at(&cpath, "sealed"),
                        message,
                    })?;
                    Some(Credential::Sealed(s.to_string()))
                }
                _ => {
                    return err(
                        &cpath,
                        "must have exactly one of \"value\", \"env\", \"file\", \"sealed\"",
                    )
                }
            }
        }
        Some(_) => return err(&at(path, "credential"), "must be an object"),
    };
    let api_version = string(obj, path, "api_version")?;
    if provider == Provider::Azure && api_version.is_none() {
        return err(&at(path, "api_version"), "is required for azure");
    }
    // it goes into a header (anthropic-version) or the query (api-version)
    if api_version.is_some_and(|v| {
        v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }) {
        return err(
            &at(path, "api_version"),
            "may only contain letters, digits, '-', '_' and '.'",
        );
    }
    let max_failures = integer(obj, path, "max_failures", 1..=1000, Some(3))? as u32;
    let cooldown_ms = match obj.get("cooldown") {
        None => 30_000,
        Some(v) => match duration_ms(v, 1000) {
            Some(ms) if ms <= 86_400_000 => ms,
            _ => {
                return err(
                    &at(path, "cooldown"),
                    "must be seconds, or \"<n>s\", \"<n>m\", \"<n>h\" (at most a day)",
                )
            }
        },
    };
    let (mut connect, mut send, mut read) = (None, None, None);
    match obj.get("timeouts") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            let tpath = at(path, "timeouts");
            known(t, &tpath, &["connect", "send", "read"])?;
            for (key, slot) in [
                ("connect", &mut connect),
                ("send", &mut send),
                ("read", &mut read),
            ] {
                if let Some(v) = t.get(key) {
                    *slot = Some(
                        duration_ms(v, 1).filter(|ms| (1..=3_600_000).contains(ms)).ok_or_else(|| ConfigError {
                        path: at(&tpath, key),
                        message: "must be milliseconds, or \"<n>ms\", \"<n>s\", \"<n>m\" (up to an hour)"
                            .to_string(),
                    })?,
                    );
                }
            }
        }
        Some(_) => return err(&at(path, "timeouts"), "must be an object"),
    }
    let max_connections = match obj.get("max_connections") {
        None | Some(Value::Null) => None,
        Some(_) => Some(integer(obj, path, "max_connections", 1..=100_000, None)? as u32),
    };
    Ok(Target {
        name: name.to_string(),
        provider,
        https,
        host,
        port,
        base_path,
        credential,
        api_version: api_version.map(str::to_string),
        max_failures,
        cooldown_ms,
        connect_timeout_ms: connect,
        send_timeout_ms: send,
        read_timeout_ms: read,
        max_connections,
    })
}

/// `http[s]://host[:port][/path]` → (https, host, port, path without trailing slash).
pub fn parse_base_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    if rest.contains(['?', '#', '@']) {
        return Err("must not have a query, fragment or user info".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unterminated [IPv6 address]")?;
        let port = &v6[end + 1..];
        (&v6[..end], port.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    // the host goes into Host and SNI, the path into the request line
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'))
    {
        return Err("has a host with characters a host name cannot have".into());
    }
    if let Some(problem) = token_problem(path).filter(|_| !path.is_empty()) {
        return Err(format!("has a path that {problem}"));
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port \"{p}\""))?,
    };
    let path = path.trim_end_matches('/').to_string();
    Ok((https, host.to_string(), port, path))
}

fn parse_route(
    v: &Value,
    path: &str,
    names: &HashMap<String, usize>,
    namespaces: &[&str],
) -> Result<Route, ConfigError> {
    let obj = object(v, path)?;
    known(
        obj,
        path,
        &[
            "name",
            "path_prefix",
            "models",
            "namespaces",
            "targets",
            "fallback",
            "rewrite",
            "retry_on",
            "max_attempts",
        ],
    )?;
    let name = string(obj, path, "name")?.unwrap_or("").to_string();
    header_text(&name, &at(path, "name"))?;
    let path_prefix = string(obj, path, "path_prefix")?.unwrap_or("/").to_string();
    if !path_prefix.starts_with('/') {
        return err(&at(path, "path_prefix"), "must start with /");
    }
    if let Some(problem) = token_problem(&path_prefix) {
        return err(
            &at(path, "path_prefix"),
            format!("is a path that {problem}"),
        );
    }
    let target_of = |v: &Value, p: &str| -> Result<usize, ConfigError> {
        match v.as_str().and_then(|n| names.get(n)) {
            Some(i) => Ok(*i),
            None => err(p, format!("unknown target {v}")),
        }
    };
    let mut targets = Vec::new();
    for (i, t) in list(obj, path, "targets")?.iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        let (index, weight) = match t {
            Value::String(_) => (target_of(t, &tpath)?, 1),
            Value::Object(o) => {
                known(o, &tpath, &["target", "weight"])?;
                let index = target_of(
                    o.get("target").unwrap_or(&Value::Null),
                    &at(&tpath, "target"),
                )?;
                let weight = integer(o, &tpath, "weight", 1..=1000, Some(1))? as u32;
                (index, weight)
            }
            _ => return err(&tpath, "must be a target name or {\"target\", \"weight\"}"),
        };
        if targets.iter().any(|(t, _)| *t == index) {
            return err(&tpath, "names a target twice");
        }
        targets.push((index, weight));
    }
    if targets.is_empty() {
        return err(&at(path, "targets"), "must name at least one target");
    }
    let fallback = list(obj, path, "fallback")?
        .iter()
        .enumerate()
        .map(|(i, v)| target_of(v, &format!("{path}.fallback[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let models = list(obj, path, "models")?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.is_empty() => Ok(Glob::new(s)),
            _ => err(&format!("{path}.models[{i}]"), "must be a non-empty string"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let route_namespaces = list(obj, path, "namespaces")?
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(code) if namespaces.contains(&code) => Ok(code.to_string()),
            _ => err(
                &format!("{path}.namespaces[{i}]"),
                format!("unknown namespace {v}"),
            ),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (rewrite_from, rewrite_to) = match obj.get("rewrite") {
        None | Some(Value::Null) => (path_prefix.clone(), "/".to_string()),
        Some(Value::Object(r)) => {
            let rpath = at(path, "rewrite");
            known(r, &rpath, &["from", "to"])?;
            let from = required(r, &rpath, "from")?;
            let to = string(r, &rpath, "to")?.unwrap_or("/");
            if !from.starts_with('/') || !to.starts_with('/') {
                return err(&rpath, "\"from\" and \"to\" must start with /");
            }
            if let Some(problem) = token_problem(to) {
                return err(&at(&rpath, "to"), format!("is a path that {problem}"));
            }
            if !path_prefix.starts_with(from) && !from.starts_with(&path_prefix) {
                return err(
                    &at(&rpath, "from"),
                    "must be a prefix of the paths the route matches",
                );
            }
            (from.to_string(), to.to_string())
        }
        Some(_) => return err(&at(path, "rewrite"), "must be an object"),
    };
    let retry_statuses = match obj.get("retry_on") {
        None | Some(Value::Null) => DEFAULT_RETRY_STATUSES.to_vec(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v.as_u64() {
                Some(s) if (400..=599).contains(&s) => Ok(s as u16),
                _ => err(
                    &format!("{path}.retry_on[{i}]"),
                    "must be an HTTP status from 400 to 599",
                ),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return err(&at(path, "retry_on"), "must be an array of statuses"),
    };
    let mut distinct: Vec<usize> = targets.iter().map(|(t, _)| *t).collect();
    for f in &fallback {
        if !distinct.contains(f) {
            distinct.push(*f);
        }
    }
    let max_attempts = integer(
        obj,
        path,
        "max_attempts",
        1..=10,
        Some(distinct.len() as u64),
    )? as usize;
    Ok(Route {
        key: String::new(),
        name,
        path_prefix,
        models,
        namespaces: route_namespaces,
        targets,
        fallback,
        rewrite_from,
        rewrite_to,
        retry_statuses,
        max_attempts,
    })
}
