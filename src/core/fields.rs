//! Reading fields of the JSON config with the JSON path of a bad one in the error (shared by
//! the config, policy and routing parsers).

use serde_json::{Map, Value};

use crate::core::config_error::ConfigError;

pub type Object = Map<String, Value>;

pub fn err<T>(path: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.to_string(),
        message: message.into(),
    })
}

/// The path of `key` inside the object at `path` (the root has the empty path).
pub fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Object, ConfigError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => err(path, "must be an object"),
    }
}

/// Unknown fields are errors: a typo must not pass silently.
pub fn known(obj: &Object, path: &str, fields: &[&str]) -> Result<(), ConfigError> {
    match obj.keys().find(|k| !fields.contains(&k.as_str())) {
        Some(k) => err(&at(path, k), "unknown field"),
        None => Ok(()),
    }
}

/// Text that may end up in an HTTP header or a log line (through a variable an operator
/// puts there): no control characters, so no CR or LF that would start a header of its own.
pub fn header_text(s: &str, path: &str) -> Result<(), ConfigError> {
    if s.chars().any(char::is_control) {
        return err(
            path,
            "must not contain control characters (line breaks, tabs, NUL)",
        );
    }
    Ok(())
}

/// Why `s` is not one header-safe token (printable ASCII, no spaces), or `None` when it is.
/// The reason never includes the value (it may be a secret).
pub fn token_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("is empty")
    } else if s.contains(['\r', '\n']) {
        Some("has a line break (one value, one line)")
    } else if s.contains([' ', '\t']) {
        Some("has a space or tab")
    } else if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Some("has a character that is not printable ASCII")
    } else {
        None
    }
}

/// A string field; `null` counts as absent.
pub fn string<'a>(obj: &'a Object, path: &str, key: &str) -> Result<Option<&'a str>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => err(&at(path, key), "must be a string"),
    }
}

/// A string field that must be there (it may be empty).
pub fn required<'a>(obj: &'a Object, path: &str, key: &str) -> Result<&'a str, ConfigError> {
    string(obj, path, key)?.map_or_else(|| err(&at(path, key), "is required"), Ok)
}

/// A string field that must be there and not be empty.
pub fn non_empty<'a>(obj: &'a Object, path: &str, key: &str) -> Result<&'a str, ConfigError> {
    match required(obj, path, key)? {
        "" => err(&at(path, key), "must not be empty"),
        s => Ok(s),
    }
}

/// An array field; absent or `null` is empty.
pub fn array<'a>(obj: &'a Object, path: &str, key: &str) -> Result<&'a [Value], ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => err(&at(path, key), "must be an array"),
    }
}

/// A boolean field; absent is false.
pub fn flag(obj: &Object, path: &str, key: &str) -> Result<bool, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => err(&at(path, key), "must be true or false"),
    }
}

/// An integer field in `range`, or `default` when absent.
pub fn integer(
    obj: &Object,
    path: &str,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
    default: Option<u64>,
) -> Result<u64, ConfigError> {
    match (obj.get(key), default) {
        (None, Some(d)) => Ok(d),
        (None, None) => err(&at(path, key), "is required"),
        (Some(v), _) => match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(n),
            _ if *range.end() == u64::MAX => err(
                &at(path, key),
                if *range.start() == 0 {
                    "must be a non-negative integer".to_string()
                } else {
                    "must be a positive integer".to_string()
                },
            ),
            _ => err(
                &at(path, key),
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            ),
        },
    }
}

/// A duration in milliseconds: a number of `number_unit_ms` milliseconds, or a string
/// `"<n>ms"`, `"<n>s"`, `"<n>m"`, `"<n>h"`, `"<n>d"`.
pub fn duration_ms(v: &Value, number_unit_ms: u64) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64()?.checked_mul(number_unit_ms),
        Value::String(s) => {
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
            let n: u64 = num.parse().ok()?;
            n.checked_mul(match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(duration_ms(&json!("90s"), 1), Some(90_000));
        assert_eq!(duration_ms(&json!("2m"), 1), Some(120_000));
        assert_eq!(duration_ms(&json!("1h"), 1), Some(3_600_000));
        assert_eq!(duration_ms(&json!("1d"), 1), Some(86_400_000));
        assert_eq!(duration_ms(&json!("250ms"), 1), Some(250));
        assert_eq!(duration_ms(&json!(5), 1000), Some(5000));
        assert_eq!(duration_ms(&json!("m"), 1), None);
        assert_eq!(duration_ms(&json!("10"), 1), None);
        assert_eq!(duration_ms(&json!("5x"), 1), None);
    }

    #[test]
    fn paths_and_integers() {
        assert_eq!(at("", "a"), "a");
        assert_eq!(at("x[0]", "a"), "x[0].a");
        let o = json!({"n": 0, "m": 7});
        let o = o.as_object().unwrap();
        assert_eq!(
            integer(o, "p", "n", 1..=u64::MAX, None)
                .unwrap_err()
                .to_string(),
            "p.n: must be a positive integer"
        );
        assert_eq!(
            integer(o, "p", "m", 1..=5, None).unwrap_err().to_string(),
            "p.m: must be an integer from 1 to 5"
        );
        assert_eq!(integer(o, "p", "z", 1..=5, Some(3)).unwrap(), 3);
    }
}
