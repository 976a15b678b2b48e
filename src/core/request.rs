//! The API request body, parsed once in the access phase.
//!
//! The parse validates the whole document (syntax and UTF-8) but materialises only what the
//! gateway acts on: `model`, `stream`, `max_tokens`, `max_completion_tokens`,
//! and where the raw JSON of the prompt's fields and `stream_options` lies in the body, so
//! that later steps (the prompt's bound and count, the include_usage insertion) read only
//! those. Other fields are skipped without allocating. Type errors in these fields are 400s with `param` set; the
//! body itself is forwarded upstream byte for byte by nginx.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::GatewayError;

/// What later phases need to know about a request.
#[derive(Debug, Default)]
pub struct RequestSummary {
    /// Size of the body as received.
    pub body_bytes: usize,
    /// Whether the body was parsed as JSON (false when empty or multipart).
    pub is_json: bool,
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// The Responses API's output limit.
    pub max_output_tokens: Option<u64>,
    /// Where the top-level fields later steps read lie in the body.
    pub spans: BodySpans,
}

/// A byte range of the body.
pub type Span = (usize, usize);

/// Where the raw JSON values of the top-level fields that make the prompt (and
/// `stream_options`) lie in the body; `None` for a field that is absent (a `null` has a span).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodySpans {
    pub model: Option<Span>,
    pub messages: Option<Span>,
    pub system: Option<Span>,
    pub tools: Option<Span>,
    pub functions: Option<Span>,
    pub input: Option<Span>,
    pub instructions: Option<Span>,
    pub prompt: Option<Span>,
    pub stream_options: Option<Span>,
}

impl RequestSummary {
    /// The output limit the client asked for: the largest of `max_tokens`,
    /// `max_completion_tokens` and `max_output_tokens` it sent. APIs honour different ones
    /// (and OpenAI's chat honours both of its own), so a policy checks the largest: a small
    /// value in one field cannot hide a large one in another.
    pub fn max_output(&self) -> Option<u64> {
        [
            self.max_tokens,
            self.max_completion_tokens,
            self.max_output_tokens,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// The raw JSON of `messages` in `body` (the body this summary was made of).
    pub fn messages_json<'b>(&self, body: &'b [u8]) -> Option<&'b str> {
        span_text(body, self.spans.messages)
    }

    /// The raw JSON of `tools` in `body`.
    pub fn tools_json<'b>(&self, body: &'b [u8]) -> Option<&'b str> {
        span_text(body, self.spans.tools)
    }
}

/// The raw JSON of the top-level fields of a request body that make its prompt (what
/// token counting reads; see `tokens::count_fields`).
#[derive(Debug, Default, Clone, Copy)]
pub struct PromptFields<'a> {
    pub messages: Option<&'a str>,
    pub system: Option<&'a str>,
    pub tools: Option<&'a str>,
    pub functions: Option<&'a str>,
    pub input: Option<&'a str>,
    pub instructions: Option<&'a str>,
    pub prompt: Option<&'a str>,
}

impl BodySpans {
    /// The prompt's fields in `body` (the body these spans were found in).
    pub fn prompt_fields<'b>(&self, body: &'b [u8]) -> PromptFields<'b> {
        PromptFields {
            messages: span_text(body, self.messages),
            system: span_text(body, self.system),
            tools: span_text(body, self.tools),
            functions: span_text(body, self.functions),
            input: span_text(body, self.input),
            instructions: span_text(body, self.instructions),
            prompt: span_text(body, self.prompt),
        }
    }
}

/// The text of a span of a body that was validated as UTF-8.
pub fn span_text(body: &[u8], span: Option<Span>) -> Option<&str> {
    let (a, b) = span?;
    std::str::from_utf8(body.get(a..b)?).ok()
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

/// The top-level fields the gateway reads, captured unparsed so that type errors can name
/// their field; everything else is skipped.
#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    functions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream_options: Present<'a>,
}

/// A field's raw JSON when it is present, `null` included (`Option` would read `null` as
/// absent).
#[derive(Default)]
pub(crate) struct Present<'a>(pub Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| Present(Some(r)))
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
    // JSON is UTF-8; serde does not check the strings it skips, so check the whole body
    let text = std::str::from_utf8(body).map_err(|e| GatewayError::InvalidJson {
        detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    if text.trim_ascii_start().as_bytes().first() != Some(&b'{') {
        // serde would read an array into the struct field by field: refuse it here
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => not_an_object(),
            Err(e) => invalid_json(&e),
        });
    }
    let top: TopLevel<'_> = serde_json::from_str(text).map_err(|e| invalid_json(&e))?;
    summary.is_json = true;
    // the model reaches log lines and, through $ai_gateway_model, headers an operator sets:
    // no control characters (a CR/LF would start a header of its own)
    summary.model = field(
        top.model,
        "model",
        "a string without control characters",
        |raw| {
            // the usual model name: a string without escapes, taken as it is
            let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
            (!inner.contains('\\') && !inner.chars().any(char::is_control))
                .then(|| inner.to_string())
        },
        |v| match v {
            Value::String(s) if !s.chars().any(char::is_control) => Some(Some(s)),
            _ => None,
        },
    )?;
    summary.stream = field(
        top.stream,
        "stream",
        "a boolean",
        |raw| match raw {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        |v| match v {
            Value::Bool(b) => Some(Some(b)),
            _ => None,
        },
    )?
    .unwrap_or(false);
    summary.max_tokens = field(top.max_tokens, "max_tokens", COUNT, plain_count, count)?;
    summary.max_completion_tokens = field(
        top.max_completion_tokens,
        "max_completion_tokens",
        COUNT,
        plain_count,
        count,
    )?;
    summary.max_output_tokens = field(
        top.max_output_tokens,
        "max_output_tokens",
        COUNT,
        plain_count,
        count,
    )?;
    array(top.messages, "messages")?;
    array(top.tools, "tools")?;
    let span = |v: Option<&RawValue>| {
        v.map(|v| {
            let start = v.get().as_ptr() as usize - text.as_ptr() as usize;
            (start, start + v.get().len())
        })
    };
    summary.spans = BodySpans {
        model: span(top.model),
        messages: span(top.messages),
        system: span(top.system),
        tools: span(top.tools),
        functions: span(top.functions),
        input: span(top.input),
        instructions: span(top.instructions),
        prompt: span(top.prompt),
        stream_options: span(top.stream_options.0),
    };
    Ok(summary)
}

const COUNT: &str = "a non-negative integer";

fn count(v: Value) -> Option<Option<u64>> {
    v.as_u64().map(Some)
}

/// A count written as plain digits that fit in u64 (anything else goes through the general
/// conversion).
fn plain_count(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// Converts one captured field; `null` counts as absent. `quick` reads the usual forms from
/// the raw text; what it declines goes through a parse into a `Value` and `convert`.
fn field<T>(
    raw: Option<&RawValue>,
    param: &'static str,
    expected: &'static str,
    quick: impl FnOnce(&str) -> Option<T>,
    convert: impl FnOnce(Value) -> Option<Option<T>>,
) -> Result<Option<T>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.get() == "null" {
        return Ok(None);
    }
    if let Some(v) = quick(raw.get()) {
        return Ok(Some(v));
    }
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| invalid_json(&e))?;
    if value.is_null() {
        return Ok(None);
    }
    convert(value).ok_or(GatewayError::InvalidField { param, expected })
}

/// Checks that a field is an array (or null).
fn array(raw: Option<&RawValue>, param: &'static str) -> Result<(), GatewayError> {
    match raw.map(|r| r.get().as_bytes().first()) {
        None | Some(Some(b'[' | b'n')) => Ok(()),
        _ => Err(GatewayError::InvalidField {
            param,
            expected: "an array",
        }),
    }
}

/// serde's message names a position (and at most a field name), never content.
fn invalid_json(e: &serde_json::Error) -> GatewayError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data if e.to_string().starts_with("duplicate field") => "duplicate field",
        Category::Data => return not_an_object(),
        Category::Io => "read error",
    };
    GatewayError::InvalidJson {
        detail: format!("{what} at line {} column {}", e.line(), e.column()),
    }
}

fn not_an_object() -> GatewayError {
    GatewayError::InvalidJson {
        detail: "the body must be a JSON object".to_string(),
    }
}

/// Parses the whole body as a JSON value (for body matchers, which may read any path).
/// Only called when a body matcher is evaluated; the body was already validated.
pub fn parse_document(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
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
        let body = r#"{"model":"gpt-4o","stream":true,"max_tokens":64,
                       "max_completion_tokens":32, "extra": {"deep": [1, {"x": null}]},
                       "messages":[{"role":"user","content":"hi"}],
                       "tools":[{"type":"function"}], "stream_options" : null}"#;
        let s = ok(body);
        let b = body.as_bytes();
        assert!(s.is_json);
        assert_eq!(s.model.as_deref(), Some("gpt-4o"));
        assert!(s.stream);
        assert_eq!(s.max_tokens, Some(64));
        assert_eq!(s.max_completion_tokens, Some(32));
        assert_eq!(
            s.messages_json(b),
            Some(r#"[{"role":"user","content":"hi"}]"#)
        );
        assert_eq!(s.tools_json(b), Some(r#"[{"type":"function"}]"#));
        assert_eq!(span_text(b, s.spans.stream_options), Some("null"));
        assert_eq!(span_text(b, s.spans.model), Some(r#""gpt-4o""#));
        assert_eq!(s.spans.system, None);
        assert!(s.body_bytes > 0);
    }

    #[test]
    fn the_largest_output_limit_counts() {
        // a small field cannot hide a large one the API honours
        let s = ok(r#"{"max_tokens":100000,"max_completion_tokens":10}"#);
        assert_eq!(s.max_output(), Some(100000));
        let s = ok(r#"{"max_completion_tokens":10,"max_output_tokens":70,"max_tokens":null}"#);
        assert_eq!(s.max_output(), Some(70));
        assert_eq!(ok(r#"{"max_output_tokens":5}"#).max_output(), Some(5));
        assert_eq!(ok(r#"{"model":"m"}"#).max_output(), None);
    }

    #[test]
    fn a_model_with_control_characters_is_refused() {
        for body in [
            r#"{"model":"gpt-4o\r\nX-Injected: 1"}"#,
            r#"{"model":"a\u0000b"}"#,
            r#"{"model":"tab\there"}"#,
        ] {
            assert_eq!(
                fails(body),
                GatewayError::InvalidField {
                    param: "model",
                    expected: "a string without control characters"
                },
                "{body}"
            );
        }
        assert_eq!(
            ok(r#"{"model":"模型 ü-1"}"#).model.as_deref(),
            Some("模型 ü-1")
        );
    }

    #[test]
    fn escaped_strings_are_decoded() {
        assert_eq!(
            ok(r#"{"model":"gpt-\u0034o"}"#).model.as_deref(),
            Some("gpt-4o")
        );
    }

    #[test]
    fn empty_and_minimal_bodies() {
        let s = ok("");
        assert!(!s.is_json && s.model.is_none() && !s.stream);
        let s = ok("{}");
        assert!(s.is_json && s.spans.messages.is_none());
        let s = ok(r#"{"model":null,"stream":null,"max_tokens":null,"messages":null}"#);
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
        assert!(!s.is_json);
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
        assert_eq!(
            parse_request(b"{\"a\":\"\xff\"}", true).unwrap_err(),
            GatewayError::InvalidJson {
                detail: "invalid UTF-8 at byte 6".into()
            }
        );
        assert_eq!(
            fails("[1]"),
            GatewayError::InvalidJson {
                detail: "the body must be a JSON object".into()
            }
        );
        assert_eq!(
            fails(r#"{"model":"a","model":"b"}"#),
            GatewayError::InvalidJson {
                detail: "duplicate field at line 1 column 20".into()
            }
        );
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
    fn deep_nesting_never_crashes() {
        let body = "[".repeat(100_000);
        assert!(matches!(
            parse_request(body.as_bytes(), true),
            Err(GatewayError::InvalidJson { .. })
        ));
        let body = "{\"a\":".repeat(100_000);
        assert!(matches!(
            parse_request(body.as_bytes(), true),
            Err(GatewayError::InvalidJson { .. })
        ));
        // skipped fields are scanned without recursion: deep but valid nesting passes
        let body = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse_request(body.as_bytes(), true).is_ok());
        // ... and a deep document simply fails to match body matchers
        assert!(parse_document(body.as_bytes()).is_none());
    }

    #[test]
    fn whole_document_for_body_matchers() {
        let doc = parse_document(br#"{"metadata":{"team":"red"}}"#).unwrap();
        assert_eq!(doc["metadata"]["team"], "red");
        assert!(parse_document(b"{").is_none());
    }
}
