//! The state of record as MySQL rows: one table per kind of resource, a row per resource.
//! A write stores only the rows that changed (`changes`), in an order the foreign keys
//! accept (parents inserted first, children deleted first).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::state::{Item, Key, Namespace, Route, Settings, State, StoredCredential, Target};
use crate::core::config_error::ConfigError;

/// A column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sql {
    Null,
    Int(i64),
    Text(String),
}

impl Sql {
    fn text(s: &str) -> Sql {
        Sql::Text(s.to_string())
    }

    fn opt(s: &Option<String>) -> Sql {
        s.as_ref().map_or(Sql::Null, |s| Sql::Text(s.clone()))
    }

    fn int(&self) -> Option<i64> {
        match self {
            Sql::Int(i) => Some(*i),
            Sql::Text(t) => t.parse().ok(),
            Sql::Null => None,
        }
    }

    fn string(&self) -> Option<String> {
        match self {
            Sql::Text(t) => Some(t.clone()),
            Sql::Int(i) => Some(i.to_string()),
            Sql::Null => None,
        }
    }
}

/// A table: its name, key columns (the first columns) and all columns.
#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub key: usize,
    pub columns: &'static [&'static str],
}

/// In foreign-key order: a table comes after those it refers to.
pub const TABLES: [Table; 7] = [
    Table {
        name: "settings",
        key: 1,
        columns: &["name", "value"],
    },
    Table {
        name: "namespaces",
        key: 1,
        columns: &[
            "code",
            "name",
            "description",
            "enabled",
            "created_at",
            "updated_at",
        ],
    },
    Table {
        name: "api_keys",
        key: 1,
        columns: &[
            "id",
            "namespace",
            "name",
            "sha256",
            "prefix",
            "enabled",
            "expires_at",
            "rotated_to",
            "created_at",
            "updated_at",
        ],
    },
    Table {
        name: "matchers",
        key: 1,
        columns: &[
            "id",
            "namespace",
            "position",
            "spec",
            "created_at",
            "updated_at",
        ],
    },
    Table {
        name: "policies",
        key: 1,
        columns: &[
            "id",
            "namespace",
            "position",
            "spec",
            "created_at",
            "updated_at",
        ],
    },
    Table {
        name: "targets",
        key: 1,
        columns: &[
            "name",
            "spec",
            "credential_kind",
            "credential",
            "credential_last4",
            "created_at",
            "updated_at",
        ],
    },
    Table {
        name: "routes",
        key: 1,
        columns: &["name", "position", "spec", "created_at", "updated_at"],
    },
];

/// Rows by table, then by key (the key columns joined), each in its table's column order.
pub type Rows = BTreeMap<&'static str, BTreeMap<String, Vec<Sql>>>;

fn key_of(row: &[Sql], n: usize) -> String {
    row[..n]
        .iter()
        .map(|v| v.string().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

fn spec_text(m: &Map<String, Value>) -> Sql {
    Sql::Text(serde_json::to_string(m).unwrap_or_default())
}

/// The rows of a state.
pub fn rows(state: &State) -> Rows {
    let mut out: Rows = TABLES.iter().map(|t| (t.name, BTreeMap::new())).collect();
    let mut put = |table: &'static str, row: Vec<Sql>| {
        let n = TABLES.iter().find(|t| t.name == table).map_or(1, |t| t.key);
        if let Some(t) = out.get_mut(table) {
            t.insert(key_of(&row, n), row);
        }
    };
    put(
        "settings",
        vec![
            Sql::text("unmatched_status"),
            Sql::Text(state.settings.unmatched_status.to_string()),
        ],
    );
    for ns in state.namespaces.values() {
        put(
            "namespaces",
            vec![
                Sql::text(&ns.code),
                Sql::opt(&ns.name),
                Sql::opt(&ns.description),
                Sql::Int(ns.enabled as i64),
                Sql::Int(ns.created_at),
                Sql::Int(ns.updated_at),
            ],
        );
        for k in ns.keys.values() {
            put(
                "api_keys",
                vec![
                    Sql::text(&k.id),
                    Sql::text(&ns.code),
                    Sql::opt(&k.name),
                    Sql::text(&k.sha256),
                    Sql::opt(&k.prefix),
                    Sql::Int(k.enabled as i64),
                    k.expires_at.map_or(Sql::Null, Sql::Int),
                    Sql::opt(&k.rotated_to),
                    Sql::Int(k.created_at),
                    Sql::Int(k.updated_at),
                ],
            );
        }
        for (table, items) in [("matchers", &ns.matchers), ("policies", &ns.policies)] {
            for (i, it) in items.iter().enumerate() {
                put(
                    table,
                    vec![
                        Sql::Int(it.id as i64),
                        Sql::text(&ns.code),
                        Sql::Int(i as i64),
                        spec_text(&it.spec),
                        Sql::Int(it.created_at),
                        Sql::Int(it.updated_at),
                    ],
                );
            }
        }
    }
    for t in state.targets.values() {
        let (kind, value, last4) = match &t.credential {
            None => (Sql::Null, Sql::Null, Sql::Null),
            Some(StoredCredential::Sealed { sealed, last4 }) => {
                (Sql::text("sealed"), Sql::text(sealed), Sql::text(last4))
            }
            Some(StoredCredential::Env { name }) => (Sql::text("env"), Sql::text(name), Sql::Null),
            Some(StoredCredential::File { path }) => {
                (Sql::text("file"), Sql::text(path), Sql::Null)
            }
        };
        put(
            "targets",
            vec![
                Sql::text(&t.name),
                spec_text(&t.spec),
                kind,
                value,
                last4,
                Sql::Int(t.created_at),
                Sql::Int(t.updated_at),
            ],
        );
    }
    for (i, r) in state.routes.iter().enumerate() {
        put(
            "routes",
            vec![
                Sql::text(&r.name),
                Sql::Int(i as i64),
                spec_text(&r.spec),
                Sql::Int(r.created_at),
                Sql::Int(r.updated_at),
            ],
        );
    }
    out
}

/// A change of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Insert(&'static Table, Vec<Sql>),
    Update(&'static Table, Vec<Sql>),
    Delete(&'static Table, Vec<Sql>),
}

/// The row changes that turn `old` into `new`: deletions children first, then insertions
/// and updates parents first.
pub fn changes(old: &Rows, new: &Rows) -> Vec<Change> {
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for t in TABLES.iter().rev() {
        let (o, n) = (
            old.get(t.name).unwrap_or(&empty),
            new.get(t.name).unwrap_or(&empty),
        );
        for (k, row) in o {
            if !n.contains_key(k) {
                out.push(Change::Delete(t, row[..t.key].to_vec()));
            }
        }
    }
    for t in TABLES.iter() {
        let (o, n) = (
            old.get(t.name).unwrap_or(&empty),
            new.get(t.name).unwrap_or(&empty),
        );
        for (k, row) in n {
            match o.get(k) {
                None => out.push(Change::Insert(t, row.clone())),
                Some(was) if was != row => out.push(Change::Update(t, row.clone())),
                Some(_) => {}
            }
        }
    }
    out
}

/// A state from its rows (`next_id` is kept in the config head).
pub fn state_from(rows: &Rows, next_id: u64) -> Result<State, String> {
    let empty = BTreeMap::new();
    let table = |name: &str| rows.get(name).unwrap_or(&empty);
    let int = |v: &Sql, what: &str| v.int().ok_or_else(|| format!("{what} is not an integer"));
    let text = |v: &Sql| v.string();
    let spec = |v: &Sql, what: &str| -> Result<Map<String, Value>, String> {
        match serde_json::from_str::<Value>(&text(v).unwrap_or_default()) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(format!("{what} is not a JSON object")),
        }
    };
    let mut state = State {
        next_id,
        settings: Settings::default(),
        ..State::default()
    };
    for row in table("settings").values() {
        if text(&row[0]).as_deref() == Some("unmatched_status") {
            state.settings.unmatched_status =
                text(&row[1]).and_then(|v| v.parse().ok()).unwrap_or(401);
        }
    }
    for row in table("namespaces").values() {
        let code = text(&row[0]).unwrap_or_default();
        state.namespaces.insert(
            code.clone(),
            Namespace {
                code,
                name: text(&row[1]),
                description: text(&row[2]),
                enabled: int(&row[3], "namespaces.enabled")? != 0,
                keys: BTreeMap::new(),
                matchers: Vec::new(),
                policies: Vec::new(),
                created_at: int(&row[4], "namespaces.created_at")?,
                updated_at: int(&row[5], "namespaces.updated_at")?,
            },
        );
    }
    for row in table("api_keys").values() {
        let ns = text(&row[1]).unwrap_or_default();
        let key = Key {
            id: text(&row[0]).unwrap_or_default(),
            name: text(&row[2]),
            sha256: text(&row[3]).unwrap_or_default(),
            prefix: text(&row[4]),
            enabled: int(&row[5], "api_keys.enabled")? != 0,
            expires_at: row[6].int(),
            rotated_to: text(&row[7]),
            created_at: int(&row[8], "api_keys.created_at")?,
            updated_at: int(&row[9], "api_keys.updated_at")?,
        };
        state
            .namespaces
            .get_mut(&ns)
            .ok_or_else(|| format!("key {} of a namespace that does not exist", key.id))?
            .keys
            .insert(key.id.clone(), key);
    }
    for name in ["matchers", "policies"] {
        let mut items: Vec<(String, i64, Item)> = Vec::new();
        for row in table(name).values() {
            items.push((
                text(&row[1]).unwrap_or_default(),
                int(&row[2], "position")?,
                Item {
                    id: int(&row[0], "id")? as u64,
                    spec: spec(&row[3], name)?,
                    created_at: int(&row[4], "created_at")?,
                    updated_at: int(&row[5], "updated_at")?,
                },
            ));
        }
        items.sort_by_key(|(ns, pos, it)| (ns.clone(), *pos, it.id));
        for (ns, _, it) in items {
            let n = state
                .namespaces
                .get_mut(&ns)
                .ok_or_else(|| format!("{name} {} of a namespace that does not exist", it.id))?;
            if name == "matchers" {
                n.matchers.push(it);
            } else {
                n.policies.push(it);
            }
        }
    }
    for row in table("targets").values() {
        let name = text(&row[0]).unwrap_or_default();
        let credential = match (text(&row[2]).as_deref(), text(&row[3])) {
            (Some("sealed"), Some(v)) => Some(StoredCredential::Sealed {
                sealed: v,
                last4: text(&row[4]).unwrap_or_default(),
            }),
            (Some("env"), Some(v)) => Some(StoredCredential::Env { name: v }),
            (Some("file"), Some(v)) => Some(StoredCredential::File { path: v }),
            _ => None,
        };
        state.targets.insert(
            name.clone(),
            Target {
                name,
                spec: spec(&row[1], "targets.spec")?,
                credential,
                created_at: int(&row[5], "targets.created_at")?,
                updated_at: int(&row[6], "targets.updated_at")?,
            },
        );
    }
    let mut routes: Vec<(i64, Route)> = Vec::new();
    for row in table("routes").values() {
        routes.push((
            int(&row[1], "routes.position")?,
            Route {
                name: text(&row[0]).unwrap_or_default(),
                spec: spec(&row[2], "routes.spec")?,
                created_at: int(&row[3], "routes.created_at")?,
                updated_at: int(&row[4], "routes.updated_at")?,
            },
        ));
    }
    routes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    state.routes = routes.into_iter().map(|(_, r)| r).collect();
    Ok(state)
}

/// The longest namespace and key names and target names the config center stores, in
/// characters (its tables' columns).
pub const NAME_MAX: usize = 255;
/// The longest route name.
pub const ROUTE_NAME_MAX: usize = 128;
/// The longest namespace description.
pub const DESCRIPTION_MAX: usize = 10_000;
/// The longest provider key (`value`) taken in clear, and the longest stored credential
/// (`sealed`, `env`, `file`).
pub const CREDENTIAL_VALUE_MAX: usize = 4096;
pub const CREDENTIAL_STORED_MAX: usize = 8192;

/// Whether every resource of `state` fits its columns and can be named in its URL: the
/// data plane takes names and texts of any length, a namespace code `.` or `..` and target
/// or route names with a `/`, which MySQL would refuse (a 503 for what is the request's
/// fault) or no URL could reach (nginx resolves `.`/`..` and decodes `%2F` before the API
/// sees the path). Limits in characters: names 255 (`NAME_MAX`), route names 128,
/// descriptions 10000; stored credentials 8192 bytes. The path of an error is the
/// document's.
pub fn fits(state: &State) -> Result<(), ConfigError> {
    let err = |path: String, message: String| Err(ConfigError { path, message });
    let long = |s: &str, max: usize| s.chars().count() > max;
    let at_most = |max: usize| format!("must be at most {max} characters");
    let dots = |n: &str| n == "." || n == "..";
    let unaddressable = "cannot be \".\" or \"..\" or have a \"/\" (a URL cannot name it)";
    for (i, ns) in state.namespaces.values().enumerate() {
        if dots(&ns.code) {
            return err(
                format!("namespaces[{i}].code"),
                "cannot be \".\" or \"..\" (a URL cannot name it)".into(),
            );
        }
        if ns.name.as_deref().is_some_and(|n| long(n, NAME_MAX)) {
            return err(format!("namespaces[{i}].name"), at_most(NAME_MAX));
        }
        if ns
            .description
            .as_deref()
            .is_some_and(|d| long(d, DESCRIPTION_MAX))
        {
            return err(
                format!("namespaces[{i}].description"),
                at_most(DESCRIPTION_MAX),
            );
        }
    }
    for (i, t) in state.targets.values().enumerate() {
        if dots(&t.name) || t.name.contains('/') {
            return err(format!("targets[{i}].name"), unaddressable.into());
        }
        if long(&t.name, NAME_MAX) {
            return err(format!("targets[{i}].name"), at_most(NAME_MAX));
        }
        let stored = match &t.credential {
            Some(StoredCredential::Sealed { sealed, .. }) => sealed.len(),
            Some(StoredCredential::Env { name }) => name.len(),
            Some(StoredCredential::File { path }) => path.len(),
            None => 0,
        };
        if stored > CREDENTIAL_STORED_MAX {
            return err(
                format!("targets[{i}].credential"),
                format!("must be at most {CREDENTIAL_STORED_MAX} bytes as stored"),
            );
        }
    }
    for (i, r) in state.routes.iter().enumerate() {
        if dots(&r.name) || r.name.contains('/') {
            return err(format!("routes[{i}].name"), unaddressable.into());
        }
        if long(&r.name, ROUTE_NAME_MAX) {
            return err(format!("routes[{i}].name"), at_most(ROUTE_NAME_MAX));
        }
    }
    Ok(())
}

/// Rows as read back from MySQL (in each table's column order).
pub fn rows_of_tables(read: BTreeMap<&'static str, Vec<Vec<Sql>>>) -> Rows {
    TABLES
        .iter()
        .map(|t| {
            let rows = read
                .get(t.name)
                .map(|rs| rs.iter().map(|r| (key_of(r, t.key), r.clone())).collect())
                .unwrap_or_default();
            (t.name, rows)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::admin::ops::{apply, Ctx, ItemKind, Op};
    use serde_json::json;

    fn sample() -> State {
        let mut s = State::default();
        let ctx = Ctx {
            now_ms: 5,
            seal: &crate::core::admin::test_seal,
            new_key: Some("sk-gw-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        };
        for op in [
            Op::CreateNamespace(json!({"code": "a", "description": "x"})),
            Op::CreateNamespace(json!({"code": "b", "status": "disabled"})),
            Op::CreateKey("a".into(), json!({"name": "k"})),
            Op::CreateItem(
                ItemKind::Policy,
                "a".into(),
                json!({"type": "requests", "limit": 1, "window": 60}),
            ),
            Op::CreateItem(
                ItemKind::Policy,
                "a".into(),
                json!({"type": "models", "allow": ["x"]}),
            ),
            Op::CreateItem(
                ItemKind::Matcher,
                "b".into(),
                json!({"type": "query", "field": "t", "operator": "equals", "value": "b"}),
            ),
            Op::CreateTarget(
                json!({"name": "t", "provider": "openai", "base_url": "http://127.0.0.1:1", "credential": {"env": "K"}}),
            ),
            Op::CreateRoute(json!({"name": "r2", "targets": ["t"]})),
            Op::CreateRoute(json!({"name": "r1", "targets": ["t"], "position": 0})),
            Op::PatchSettings(json!({"unmatched_status": 404})),
        ] {
            apply(&mut s, &op, &ctx).unwrap();
        }
        s
    }

    #[test]
    fn a_state_survives_its_rows() {
        let s = sample();
        let r = rows(&s);
        let back = state_from(&r, s.next_id).unwrap();
        assert_eq!(back, s);
        // as MySQL gives them back: lists of rows
        let read = r
            .iter()
            .map(|(t, rows)| (*t, rows.values().cloned().collect::<Vec<_>>()))
            .collect();
        assert_eq!(state_from(&rows_of_tables(read), s.next_id).unwrap(), s);
    }

    #[test]
    fn only_changed_rows_are_written_in_foreign_key_order() {
        let s = sample();
        assert!(changes(&rows(&s), &rows(&s)).is_empty());
        let mut t = s.clone();
        t.namespaces.remove("a");
        t.namespaces.get_mut("b").unwrap().enabled = true;
        let c = changes(&rows(&s), &rows(&t));
        let names: Vec<(&str, &str)> = c
            .iter()
            .map(|c| match c {
                Change::Insert(t, _) => ("insert", t.name),
                Change::Update(t, _) => ("update", t.name),
                Change::Delete(t, _) => ("delete", t.name),
            })
            .collect();
        assert_eq!(
            names,
            [
                ("delete", "policies"),
                ("delete", "policies"),
                ("delete", "api_keys"),
                ("delete", "namespaces"),
                ("update", "namespaces"),
            ]
        );
        let c = changes(&rows(&State::default()), &rows(&s));
        let first_key = c
            .iter()
            .position(|c| matches!(c, Change::Insert(t, _) if t.name == "api_keys"));
        let first_ns = c
            .iter()
            .position(|c| matches!(c, Change::Insert(t, _) if t.name == "namespaces"));
        assert!(first_ns < first_key);
    }
}
