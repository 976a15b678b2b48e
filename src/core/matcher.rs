//! Namespace matchers: a request header, query argument or JSON body field compared with an
//! operator (equals, not_equals, contains, starts_with, ends_with, regex).
//!
//! Regexes use the `regex` crate (linear time, no catastrophic backtracking) and are compiled
//! once when the config is loaded.

use std::borrow::Cow;

use regex::Regex;
use serde_json::Value;

/// Where a matcher reads its value from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A request header; the name is stored lower-case and compared case-insensitively.
    Header(String),
    /// A query string argument (name compared case-insensitively, value percent-decoded).
    Query(String),
    /// A dot path into the JSON body (`metadata.team`, `messages.0.role`).
    Body(Vec<String>),
}

/// How the request's value is compared with the matcher's value.
#[derive(Debug, Clone)]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
    Regex(Regex),
}

impl Operator {
    /// Names accepted in the config, in documentation order.
    pub const NAMES: [&'static str; 6] = [
        "equals",
        "not_equals",
        "contains",
        "starts_with",
        "ends_with",
        "regex",
    ];

    /// Builds an operator from its config name; `value` is compiled for `regex`.
    pub fn parse(name: &str, value: &str) -> Result<Self, String> {
        Ok(match name {
            "equals" => Self::Equals,
            "not_equals" => Self::NotEquals,
            "contains" => Self::Contains,
            "starts_with" => Self::StartsWith,
            "ends_with" => Self::EndsWith,
            "regex" => Self::Regex(
                regex::RegexBuilder::new(value)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("invalid regex: {}", first_line(&e.to_string())))?,
            ),
            other => return Err(format!("unknown operator \"{other}\"")),
        })
    }

    /// Compares the request's `actual` value with the matcher's `expected` value.
    pub fn test(&self, actual: &str, expected: &str) -> bool {
        match self {
            Self::Equals => actual == expected,
            Self::NotEquals => actual != expected,
            Self::Contains => actual.contains(expected),
            Self::StartsWith => actual.starts_with(expected),
            Self::EndsWith => actual.ends_with(expected),
            Self::Regex(re) => re.is_match(actual),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
}

/// What a matcher needs to know about a request. The nginx layer implements it over
/// `ngx_http_request_t`; tests implement it over plain maps.
pub trait RequestView {
    /// The first header with this (lower-case) name.
    fn header(&self, lowercase_name: &str) -> Option<Cow<'_, str>>;
    /// The first query argument with this name, percent-decoded.
    fn query_arg(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The parsed JSON body, when the request had one.
    fn body(&self) -> Option<&Value>;
}

/// A request with no header, query argument or body (unit tests).
#[cfg(test)]
pub struct EmptyView;

#[cfg(test)]
impl RequestView for EmptyView {
    fn header(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn query_arg(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
    fn body(&self) -> Option<&Value> {
        None
    }
}

/// One compiled matcher rule, pointing at the namespace it identifies.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub source: Source,
    pub operator: Operator,
    pub value: String,
    pub priority: i64,
    /// Index of the namespace in the config.
    pub namespace: usize,
}

impl Matcher {
    /// True when the request has the field and the comparison holds. A missing field never
    /// matches, whatever the operator (so `not_equals` needs the field to be present).
    pub fn matches(&self, req: &dyn RequestView) -> bool {
        let actual = match &self.source {
            Source::Header(name) => req.header(name),
            Source::Query(name) => req.query_arg(name),
            Source::Body(path) => req.body().and_then(|b| body_field(b, path)),
        };
        match actual {
            Some(actual) => self.operator.test(&actual, &self.value),
            None => false,
        }
    }
}

/// Resolves a dot path in a JSON document. Object keys are looked up by name, array elements
/// by decimal index. Strings compare by their content, numbers and booleans by their JSON
/// text; `null`, objects and arrays have no comparable value.
pub fn body_field<'a>(root: &'a Value, path: &[String]) -> Option<Cow<'a, str>> {
    let mut cur = root;
    for seg in path {
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match cur {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Finds a query argument in a raw query string (`a=1&b=x%20y`), nginx-style: names compare
/// case-insensitively; the value is percent-decoded and `+` becomes a space.
pub fn find_query_arg<'a>(query: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    for pair in query.split(|&c| c == b'&') {
        let (k, v) = match pair.iter().position(|&c| c == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if k.eq_ignore_ascii_case(name.as_bytes()) {
            return Some(percent_decode(v));
        }
    }
    None
}

fn percent_decode(v: &[u8]) -> Cow<'_, str> {
    if !v.iter().any(|&c| c == b'%' || c == b'+') {
        return String::from_utf8_lossy(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < v.len() => match (hex_val(v[i + 1]), hex_val(v[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(name: &str, value: &str) -> Operator {
        Operator::parse(name, value).expect("valid operator")
    }

    #[test]
    fn every_operator() {
        assert!(op("equals", "a").test("a", "a"));
        assert!(!op("equals", "a").test("A", "a"));
        assert!(op("not_equals", "a").test("b", "a"));
        assert!(!op("not_equals", "a").test("a", "a"));
        assert!(op("contains", "mid").test("a-mid-b", "mid"));
        assert!(!op("contains", "mid").test("a-b", "mid"));
        assert!(op("starts_with", "pre").test("prefix", "pre"));
        assert!(!op("starts_with", "pre").test("apre", "pre"));
        assert!(op("ends_with", "fix").test("suffix", "fix"));
        assert!(!op("ends_with", "fix").test("fixe", "fix"));
        assert!(op("regex", "^team-[0-9]+$").test("team-42", "^team-[0-9]+$"));
        assert!(!op("regex", "^team-[0-9]+$").test("team-x", "^team-[0-9]+$"));
    }

    #[test]
    fn unknown_operator_and_bad_regex_are_errors() {
        assert_eq!(
            Operator::parse("like", "x").unwrap_err(),
            "unknown operator \"like\""
        );
        let err = Operator::parse("regex", "(unclosed").unwrap_err();
        assert!(err.starts_with("invalid regex: "), "{err}");
    }

    #[test]
    fn regex_is_linear_on_hostile_input() {
        let re = op("regex", "(a+)+$");
        let input = "a".repeat(100_000) + "!";
        assert!(!re.test(&input, ""));
    }

    #[test]
    fn body_paths() {
        let doc = json!({"metadata": {"team": "red", "n": 7, "ok": true, "nil": null},
                         "messages": [{"role": "system"}, {"role": "user"}]});
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(body_field(&doc, &p("metadata.team")).unwrap(), "red");
        assert_eq!(body_field(&doc, &p("metadata.n")).unwrap(), "7");
        assert_eq!(body_field(&doc, &p("metadata.ok")).unwrap(), "true");
        assert!(body_field(&doc, &p("metadata.nil")).is_none());
        assert!(body_field(&doc, &p("metadata")).is_none());
        assert_eq!(body_field(&doc, &p("messages.1.role")).unwrap(), "user");
        assert!(body_field(&doc, &p("messages.9.role")).is_none());
        assert!(body_field(&doc, &p("messages.x")).is_none());
        assert!(body_field(&doc, &p("missing.deep")).is_none());
    }

    #[test]
    fn query_args() {
        let q = b"a=1&Team=red%20one&plus=x+y&empty=&flag&bad=%zz";
        assert_eq!(find_query_arg(q, "a").unwrap(), "1");
        assert_eq!(find_query_arg(q, "team").unwrap(), "red one");
        assert_eq!(find_query_arg(q, "plus").unwrap(), "x y");
        assert_eq!(find_query_arg(q, "empty").unwrap(), "");
        assert_eq!(find_query_arg(q, "flag").unwrap(), "");
        assert_eq!(find_query_arg(q, "bad").unwrap(), "%zz");
        assert!(find_query_arg(q, "none").is_none());
        assert_eq!(find_query_arg(b"t=%4", "t").unwrap(), "%4");
    }
}
