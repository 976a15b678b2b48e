//! The API request body, parsed once in the access phase.
//!
//! Only the fields the gateway acts on are validated (type errors are 400s with `param` set);
//! the rest of the document is kept as parsed for later phases (token counting, body
//! matchers) and forwarded upstream byte for byte by nginx.

use serde_json::Value;

use super::error::GatewayError;

/// What later phases need to know about a request.
#[derive(Debug, Default)]
pub struct RequestSummary {
    /// Size of the body as received.
    pub body_bytes: usize,
    /// The parsed document; `None` when there was no body or it is not JSON (multipart).
    pub json: Option<Value>,
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
}

impl RequestSummary {
    /// The `messages` array (OpenAI chat, Anthropic messages).
    pub fn messages(&self) -> &[Value] {
        self.array("messages")
    }

    /// The `tools` array.
    pub fn tools(&self) -> &[Value] {
        self.array("tools")
    }

    fn array(&self, key: &str) -> &[Value] {
        self.json
            .as_ref()
            .and_then(|j| j.get(key))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Whether a body with this `Content-Type` is expected to be JSON. Everything is, except
/// multipart uploads (audio transcription, files) which pass through unparsed.
pub fn is_json_content_type(content_type: Option<&[u8]>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let ct = ct.trim_ascii_start();
            !(ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/"))
        }
    }
}

/// Parses a request body. An empty body yields an empty summary.
pub fn parse_request(body: &[u8], json_expected: bool) -> Result<RequestSummary, GatewayError> {
    let mut summary = RequestSummary {
        body_bytes: body.len(),
        ..RequestSummary::default()
    };
    if body.is_empty() || !json_expected {
        return Ok(summary);
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson {
        detail: describe(&e),
    })?;
    let obj = match &doc {
        Value::Object(o) => o,
        _ => {
            return Err(GatewayError::InvalidJson {
                detail: "the body must be a JSON object".to_string(),
            })
        }
    };

    summary.model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("model", "a string")),
    };
    summary.stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "a boolean")),
    };
    summary.max_tokens = count_field(obj.get("max_tokens"), "max_tokens")?;
    summary.max_completion_tokens =
        count_field(obj.get("max_completion_tokens"), "max_completion_tokens")?;
    for key in ["messages", "tools"] {
        match obj.get(key) {
            None | Some(Value::Null) | Some(Value::Array(_)) => {}
            Some(_) => return Err(invalid(key, "an array")),
        }
    }
    summary.json = Some(doc);
    Ok(summary)
}

fn count_field(v: Option<&Value>, name: &'static str) -> Result<Option<u64>, GatewayError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(name, "a non-negative integer")),
    }
}

fn invalid(param: &'static str, expected: &'static str) -> GatewayError {
    GatewayError::InvalidField { param, expected }
}

/// serde's message names a position, never content.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> RequestSummary {
        parse_request(body.as_bytes(), true).expect("valid request")
    }

    fn fails(body: &str) -> GatewayError {
        parse_request(body.as_bytes(), true).expect_err("invalid request")
    }

    #[test]
    fn summary_fields() {
        let s = ok(r#"{"model":"gpt-4o","stream":true,"max_tokens":64,
                       "max_completion_tokens":32,
                       "messages":[{"role":"user","content":"hi"}],
                       "tools":[{"type":"function"}]}"#);
        assert_eq!(s.model.as_deref(), Some("gpt-4o"));
        assert!(s.stream);
        assert_eq!(s.max_tokens, Some(64));
        assert_eq!(s.max_completion_tokens, Some(32));
        assert_eq!(s.messages().len(), 1);
        assert_eq!(s.tools().len(), 1);
        assert!(s.body_bytes > 0);
    }

    #[test]
    fn empty_and_minimal_bodies() {
        let s = ok("");
        assert!(s.json.is_none() && s.model.is_none() && !s.stream);
        let s = ok("{}");
        assert!(s.json.is_some() && s.messages().is_empty());
        let s = ok(r#"{"model":null,"stream":null,"max_tokens":null}"#);
        assert!(s.model.is_none() && !s.stream && s.max_tokens.is_none());
    }

    #[test]
    fn multipart_is_not_parsed() {
        assert!(!is_json_content_type(Some(
            b"multipart/form-data; boundary=x"
        )));
        assert!(is_json_content_type(Some(b"application/json")));
        assert!(is_json_content_type(Some(
            b"application/x-www-form-urlencoded"
        )));
        assert!(is_json_content_type(None));
        let s = parse_request(b"--x\r\nnot json", false).unwrap();
        assert!(s.json.is_none());
        assert_eq!(s.body_bytes, 13);
    }

    #[test]
    fn malformed_json() {
        for body in [
            "{",
            "{\"model\":}",
            "nope",
            "[1,2]",
            "\"str\"",
            "  ",
            "{\"a\":1}x",
        ] {
            match fails(body) {
                GatewayError::InvalidJson { detail } => {
                    assert!(
                        !detail.contains("nope"),
                        "detail must not echo input: {detail}"
                    )
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_request(b"{\"a\":\"\xff\"}", true),
            Err(GatewayError::InvalidJson { .. })
        ));
    }

    #[test]
    fn wrong_field_types() {
        let param = |body: &str| fails(body).param();
        assert_eq!(param(r#"{"model":1}"#), Some("model"));
        assert_eq!(param(r#"{"stream":"yes"}"#), Some("stream"));
        assert_eq!(param(r#"{"max_tokens":-1}"#), Some("max_tokens"));
        assert_eq!(param(r#"{"max_tokens":1.5}"#), Some("max_tokens"));
        assert_eq!(
            param(r#"{"max_completion_tokens":"9"}"#),
            Some("max_completion_tokens")
        );
        assert_eq!(param(r#"{"messages":{}}"#), Some("messages"));
        assert_eq!(param(r#"{"tools":"x"}"#), Some("tools"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = "[".repeat(100_000);
        assert!(matches!(
            parse_request(body.as_bytes(), true),
            Err(GatewayError::InvalidJson { .. })
        ));
        let body = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(
            parse_request(body.as_bytes(), true),
            Err(GatewayError::InvalidJson { .. })
        ));
    }
}
