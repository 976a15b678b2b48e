//! Keeps `openapi.json` true to the router: every path template and method of
//! [`endpoint::templates`] is in the document and nothing else is, every `$ref` resolves,
//! every operation states the role it needs (`x-required-role`, as [`Endpoint::need`] says),
//! and one that needs a caller lists 401 (and 403 where a caller can be refused).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::OPENAPI;
use crate::core::admin::auth::Need;
use crate::core::admin::endpoint::{templates, Endpoint, Method};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

fn role_of(need: Need) -> &'static str {
    match need {
        Need::Public => "public",
        Need::Authenticated => "authenticated",
        Need::Read => "viewer",
        Need::Edit => "editor",
        Need::Admin => "admin",
    }
}

fn method_of(m: Method) -> &'static str {
    match m {
        Method::Get => "get",
        Method::Head => "head",
        Method::Post => "post",
        Method::Put => "put",
        Method::Patch => "patch",
        Method::Delete => "delete",
        Method::Other => "other",
    }
}

/// `(path, method)` -> the endpoint, from the router.
fn routed() -> BTreeMap<(String, &'static str), (Endpoint, Method)> {
    let mut out = BTreeMap::new();
    for (path, e) in templates() {
        for m in e.methods() {
            out.insert((path.to_string(), method_of(*m)), (e.clone(), *m));
        }
    }
    out
}

/// `(path, method)` -> the operation, from the document.
fn documented(doc: &Value) -> BTreeMap<(String, &'static str), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, op) in item.as_object().expect("a path item") {
            match METHODS.iter().find(|m| **m == key) {
                Some(m) => {
                    out.insert((path.clone(), *m), op.clone());
                }
                None => assert!(
                    ["parameters", "summary", "description"].contains(&key.as_str()),
                    "{path}: unexpected key {key}"
                ),
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = doc();
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let routed: BTreeSet<_> = routed().into_keys().collect();
    let documented: BTreeSet<_> = documented(&doc).into_keys().collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routed, not documented: {missing:?}");
    assert!(extra.is_empty(), "documented, not routed: {extra:?}");
}

/// Every `$ref` in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref" {
                    if let Some(r) = x.as_str() {
                        out.push((at.to_string(), r.to_string()));
                    }
                } else {
                    refs(x, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, "", &mut all);
    assert!(all.len() > 100, "{} refs", all.len());
    for (at, r) in &all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {r} is not a local reference"));
        let target = doc.pointer(pointer);
        assert!(
            target.is_some_and(|t| !t.is_null()),
            "{at}: {r} does not resolve"
        );
    }
    // and every component is used
    let used: BTreeSet<&str> = all.iter().map(|(_, r)| r.as_str()).collect();
    for kind in ["schemas", "parameters", "headers", "responses"] {
        for name in doc["components"][kind].as_object().expect(kind).keys() {
            let r = format!("#/components/{kind}/{name}");
            // 405 can be the answer to any path (a method it does not take): no operation
            // lists it
            if r != "#/components/responses/MethodNotAllowed" {
                assert!(used.contains(r.as_str()), "{r} is not used");
            }
        }
    }
}

/// The status codes an operation lists.
fn statuses(op: &Value) -> BTreeSet<String> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn roles_and_denials_are_stated() {
    let doc = doc();
    let ops = documented(&doc);
    for ((path, method), (e, m)) in routed() {
        let op = &ops[&(path.clone(), method)];
        let need = e.need(m);
        let at = format!("{method} {path}");
        assert_eq!(
            op["x-required-role"].as_str(),
            Some(role_of(need)),
            "{at}: x-required-role"
        );
        let codes = statuses(op);
        let security = op["security"].as_array().expect("security");
        if need == Need::Public {
            assert!(
                security.is_empty(),
                "{at}: a public call needs no credential"
            );
        } else {
            assert!(codes.contains("401"), "{at}: needs a caller, yet no 401");
            // a session or an API token; a session's state-changing calls add the CSRF header
            let schemes: BTreeSet<String> = security
                .iter()
                .map(|s| {
                    let mut k: Vec<&String> =
                        s.as_object().expect("a requirement").keys().collect();
                    k.sort();
                    k.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("+")
                })
                .collect();
            let session = if m.is_safe() {
                "session"
            } else {
                "csrf+session"
            };
            assert_eq!(
                schemes,
                BTreeSet::from(["bearer".to_string(), session.to_string()]),
                "{at}: security"
            );
            // a role above viewer can be refused, and so can a session without its CSRF
            // token on an state-changing call
            let refusable = matches!(need, Need::Edit | Need::Admin) || !m.is_safe();
            assert_eq!(codes.contains("403"), refusable, "{at}: 403");
        }
        // the store can fail on every call, and the nginx layer can time out
        for c in ["503", "504"] {
            assert!(codes.contains(c), "{at}: no {c}");
        }
        // a body: JSON only
        if matches!(m, Method::Post | Method::Put | Method::Patch) {
            for c in ["400", "413", "415"] {
                assert!(codes.contains(c), "{at}: no {c}");
            }
        }
        // a configuration write: If-Match, dry runs, propagation
        if e.writes_config(m) {
            for c in ["409", "412", "202"] {
                assert!(codes.contains(c), "{at}: a configuration write without {c}");
            }
            let names: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["$ref"].as_str())
                .filter_map(|r| r.rsplit('/').next())
                .collect();
            for p in ["dry_run", "wait_applied", "message"] {
                assert!(names.contains(p), "{at}: no ?{p}");
            }
        }
        // success is documented with a JSON body
        let success: Vec<&String> = codes.iter().filter(|c| c.starts_with('2')).collect();
        assert!(!success.is_empty(), "{at}: no success answer");
        for c in success {
            assert!(
                op["responses"][c]["content"]["application/json"]["schema"].is_object(),
                "{at}: {c} has no JSON schema"
            );
        }
    }
}

#[test]
fn path_parameters_are_declared() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let declared: BTreeSet<String> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["$ref"].as_str())
            .map(|r| {
                let name = r.rsplit('/').next().unwrap_or_default();
                let p = &doc["components"]["parameters"][name];
                assert_eq!(p["in"], "path", "{path}: {r} is not a path parameter");
                p["name"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        let in_path: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, in_path, "{path}");
    }
}

#[test]
fn usage_rows_have_the_columns_of_the_usage_table() {
    use crate::core::access_log::usage::{Interval, DIMENSIONS, USAGE_SUMS};
    let doc = doc();
    let row = &doc["components"]["schemas"]["UsageRow"];
    let documented: BTreeSet<&str> = row["properties"]
        .as_object()
        .expect("UsageRow properties")
        .keys()
        .map(String::as_str)
        .collect();
    // every row has its time and sums; the group's dimensions come and go
    let always: BTreeSet<&str> = ["time"]
        .into_iter()
        .chain(USAGE_SUMS.iter().copied())
        .collect();
    let answered: BTreeSet<&str> = always
        .iter()
        .copied()
        .chain(DIMENSIONS.iter().copied())
        .collect();
    assert_eq!(documented, answered);
    let required: BTreeSet<&str> = row["required"]
        .as_array()
        .expect("UsageRow required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, always);
    let names: Vec<&str> = [Interval::Minute, Interval::Hour, Interval::Day]
        .iter()
        .map(|i| i.name())
        .collect();
    for at in [
        "/components/parameters/interval/schema/enum",
        "/components/schemas/UsagePage/properties/interval/enum",
    ] {
        let listed: Vec<&str> = doc
            .pointer(at)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(listed, names, "{at}");
        assert!(names.iter().all(|n| Interval::parse(n).is_some()));
    }
}
