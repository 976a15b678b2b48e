//! The admin API's errors: `{"error": {"code", "message", "details": [{"path", "message"}]}}`
//! with the HTTP status that means them. `path` is a JSON path into the request body (or,
//! for a configuration that does not validate as a whole, into the gateway document).

use serde_json::{json, Value};

use crate::core::config_error::ConfigError;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub path: String,
    pub message: String,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    /// `Retry-After` seconds (429, 503, a locked account).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_s: None,
        }
    }

    pub fn with_detail(mut self, path: impl Into<String>, message: impl Into<String>) -> Self {
        self.details.push(Detail {
            path: path.into(),
            message: message.into(),
        });
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }

    /// 400 `validation_failed` for one field.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> ApiError {
        let path = path.into();
        let message = message.into();
        let summary = if path.is_empty() {
            message.clone()
        } else {
            format!("{path}: {message}")
        };
        ApiError::new(400, "validation_failed", summary).with_detail(path, message)
    }

    /// A configuration error of the data plane's parser, its path below `prefix` (the part
    /// of the gateway document the request body stands for) taken off.
    pub fn from_config(e: &ConfigError, prefix: &str) -> ApiError {
        let path = strip_prefix(&e.path, prefix);
        ApiError::invalid(path, e.message.clone())
    }

    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("{what} \"{id}\" does not exist"))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "store_unavailable", message).retry_after(1)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal_error", message)
    }

    pub fn to_json(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "details": self.details.iter().map(|d| json!({"path": d.path, "message": d.message})).collect::<Vec<_>>(),
        }})
    }
}

/// `prefix.rest` -> `rest`, `prefix` -> `""`, anything else unchanged.
pub fn strip_prefix(path: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        return path.to_string();
    }
    match path.strip_prefix(prefix) {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('.') => rest[1..].to_string(),
        Some(rest) if rest.starts_with('[') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// Splits a loader message `"<path>: <message>"` (the data plane's `ConfigError` as text)
/// into its parts; a message without a path has the empty path.
pub fn split_config_message(text: &str) -> Detail {
    if let Some((path, message)) = text.split_once(": ") {
        let looks_like_path = !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']'));
        if looks_like_path {
            return Detail {
                path: path.to_string(),
                message: message.to_string(),
            };
        }
    }
    Detail {
        path: String::new(),
        message: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_a_prefix() {
        assert_eq!(
            strip_prefix(
                "namespaces[0].policies[0].limit",
                "namespaces[0].policies[0]"
            ),
            "limit"
        );
        assert_eq!(strip_prefix("targets[0]", "targets[0]"), "");
        assert_eq!(
            strip_prefix("targets[0].timeouts.read", "targets[0]"),
            "timeouts.read"
        );
        assert_eq!(
            strip_prefix("routes[0].targets[1]", "routes[0]"),
            "targets[1]"
        );
        assert_eq!(strip_prefix("routes[1].x", "routes[0]"), "routes[1].x");
        assert_eq!(strip_prefix("routes[10].x", "routes[1]"), "routes[10].x");
    }

    #[test]
    fn loader_messages_split_at_the_path() {
        let d =
            split_config_message("namespaces[2].matchers[0].operator: unknown operator \"like\"");
        assert_eq!(d.path, "namespaces[2].matchers[0].operator");
        assert_eq!(d.message, "unknown operator \"like\"");
        let d = split_config_message("invalid JSON: expected value at line 1 column 2");
        assert_eq!(d.path, "");
        let e = ApiError::invalid("limit", "must be a positive integer");
        assert_eq!(e.message, "limit: must be a positive integer");
        assert_eq!(
            e.to_json()["error"]["details"][0]["path"],
            Value::from("limit")
        );
    }
}
