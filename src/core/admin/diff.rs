//! The difference between two gateway documents, as a list of changes with paths:
//! lists of objects that have an identity (`code`, `name`, `sha256`) are compared item by
//! item by that identity (`namespaces[team-a].policies[0].limit`), other lists by index.
//! Credentials show as changed, never with their (sealed) values.

use serde_json::{json, Map, Value};

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

impl Change {
    pub fn to_json(&self) -> Value {
        json!({"path": self.path, "op": self.op, "from": self.from, "to": self.to})
    }
}

/// The changes that turn `a` into `b` (the documents' `version` left aside).
pub fn diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("version");
        }
        v
    };
    walk("", &strip(a), &strip(b), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn redacted(path: &str, v: &Value) -> Value {
    if path.ends_with("credential") || path.contains("credential.") {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| {
                        let shown = if k == "value" || k == "sealed" {
                            Value::from("(secret)")
                        } else {
                            v.clone()
                        };
                        (k.clone(), shown)
                    })
                    .collect::<Map<_, _>>(),
            ),
            Value::String(_) => Value::from("(secret)"),
            other => other.clone(),
        }
    } else {
        v.clone()
    }
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = join(path, k);
                match y.get(k) {
                    Some(vb) => walk(&p, va, vb, out),
                    None => out.push(Change {
                        op: "removed",
                        from: Some(redacted(&p, va)),
                        to: None,
                        path: p,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    let p = join(path, k);
                    out.push(Change {
                        op: "added",
                        from: None,
                        to: Some(redacted(&p, vb)),
                        path: p,
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => match (identities(x), identities(y)) {
            (Some(ix), Some(iy)) => {
                for (id, va) in ix.iter().zip(x) {
                    let p = format!("{path}[{id}]");
                    match iy.iter().position(|j| j == id) {
                        Some(j) => walk(&p, va, &y[j], out),
                        None => out.push(Change {
                            op: "removed",
                            from: Some(redacted(&p, va)),
                            to: None,
                            path: p,
                        }),
                    }
                }
                for (id, vb) in iy.iter().zip(y) {
                    if !ix.contains(id) {
                        let p = format!("{path}[{id}]");
                        out.push(Change {
                            op: "added",
                            from: None,
                            to: Some(redacted(&p, vb)),
                            path: p,
                        });
                    }
                }
                let common_a: Vec<&String> = ix.iter().filter(|i| iy.contains(i)).collect();
                let common_b: Vec<&String> = iy.iter().filter(|i| ix.contains(i)).collect();
                if common_a != common_b {
                    out.push(Change {
                        path: format!("{path}[]"),
                        op: "reordered",
                        from: Some(Value::from(
                            common_a.into_iter().cloned().collect::<Vec<_>>(),
                        )),
                        to: Some(Value::from(
                            common_b.into_iter().cloned().collect::<Vec<_>>(),
                        )),
                    });
                }
            }
            _ => {
                for i in 0..x.len().max(y.len()) {
                    let p = format!("{path}[{i}]");
                    match (x.get(i), y.get(i)) {
                        (Some(va), Some(vb)) => walk(&p, va, vb, out),
                        (Some(va), None) => out.push(Change {
                            op: "removed",
                            from: Some(redacted(&p, va)),
                            to: None,
                            path: p,
                        }),
                        (None, Some(vb)) => out.push(Change {
                            op: "added",
                            from: None,
                            to: Some(redacted(&p, vb)),
                            path: p,
                        }),
                        (None, None) => {}
                    }
                }
            }
        },
        _ => out.push(Change {
            op: "changed",
            from: Some(redacted(path, a)),
            to: Some(redacted(path, b)),
            path: path.to_string(),
        }),
    }
}

/// The identities of a list's items, when every item is an object with a distinct `code`,
/// `name` or `sha256` (or a bare hash string).
fn identities(list: &[Value]) -> Option<Vec<String>> {
    let ids: Option<Vec<String>> = list
        .iter()
        .map(|v| match v {
            Value::Object(o) => ["code", "name", "sha256"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(|s| {
                    s.chars()
                        .take(if o.contains_key("sha256") && !o.contains_key("code") {
                            12
                        } else {
                            256
                        })
                        .collect()
                }),
            Value::String(s) if s.len() == 64 => Some(s[..12].to_string()),
            _ => None,
        })
        .collect();
    let ids = ids?;
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    (sorted.len() == ids.len()).then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_by_identity() {
        let a = json!({"version": 1, "namespaces": [
            {"code": "a", "name": "A", "policies": [{"type": "requests", "limit": 5}]},
            {"code": "b"}],
            "targets": [{"name": "t", "credential": {"sealed": "v1:x:y"}}]});
        let b = json!({"version": 2, "namespaces": [
            {"code": "b"},
            {"code": "c"},
            {"code": "a", "name": "A", "policies": [{"type": "requests", "limit": 6}]}],
            "targets": [{"name": "t", "credential": {"sealed": "v1:x:z"}}]});
        let d = diff(&a, &b);
        let paths: Vec<(&str, &str)> = d.iter().map(|c| (c.path.as_str(), c.op)).collect();
        assert_eq!(
            paths,
            [
                ("namespaces[a].policies[0].limit", "changed"),
                ("namespaces[c]", "added"),
                ("namespaces[]", "reordered"),
                ("targets[t].credential.sealed", "changed"),
            ]
        );
        assert_eq!(d[3].to, Some(Value::from("(secret)")));
        assert!(diff(&a, &a).is_empty());
    }
}
