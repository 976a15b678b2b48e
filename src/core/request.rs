//! The API request body, parsed once in the access phase.
//!
//! The parse validates the whole document (syntax and UTF-8) but materialises only what the
//! gateway acts on: `model`, `stream`, `max_tokens`, `max_completion_tokens`,
//! and where the raw JSON of the prompt's fields and `stream_options` lies in the body, so
//! that later steps (the prompt's bound and count, the include_usage insertion) read only
//! those. Other fields are skipped without allocating. Type errors in these fields are 400s with `param` set; the
//! body itself is forwarded upstream byte for byte by nginx.

use serde_json::Value;

use super::error::GatewayError;
use super::json_check::{Check, Stop};

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
    /// The prompt's fields in `text` (the body these spans were found in).
    pub fn prompt_fields<'b>(&self, text: &'b str) -> PromptFields<'b> {
        let field = |span: Option<Span>| span.and_then(|(a, b)| text.get(a..b));
        PromptFields {
            messages: field(self.messages),
            system: field(self.system),
            tools: field(self.tools),
            functions: field(self.functions),
            input: field(self.input),
            instructions: field(self.instructions),
            prompt: field(self.prompt),
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

/// The top-level fields the gateway reads, in the order of `BodySpans`'s slots.
const FIELDS: [&[u8]; 13] = [
    b"model",
    b"stream",
    b"max_tokens",
    b"max_completion_tokens",
    b"max_output_tokens",
    b"messages",
    b"tools",
    b"system",
    b"functions",
    b"input",
    b"instructions",
    b"prompt",
    b"stream_options",
];

/// Where each of [`FIELDS`] lies in the body (`None`: absent).
type Found = [Option<Span>; FIELDS.len()];

/// Parses a request body. An empty body yields an empty summary.
pub fn parse_request(body: &[u8], json_expected: bool) -> Result<RequestSummary, GatewayError> {
    parse_request_text(body, json_expected).map(|(summary, _)| summary)
}

/// [`parse_request`], and the body as text when it is JSON (validated UTF-8, so that later
/// steps read its spans without checking them again).
pub fn parse_request_text(
    body: &[u8],
    json_expected: bool,
) -> Result<(RequestSummary, Option<&str>), GatewayError> {
    let mut summary = RequestSummary {
        body_bytes: body.len(),
        ..RequestSummary::default()
    };
    if body.is_empty() || !json_expected {
        return Ok((summary, None));
    }
    // JSON is UTF-8; the syntax check does not look inside strings' bytes
    let text = std::str::from_utf8(body).map_err(|e| GatewayError::InvalidJson {
        detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    let found = top_level(body)?;
    summary.is_json = true;
    let raw = |k: usize| found[k].and_then(|(a, b)| text.get(a..b));
    // the model reaches log lines and, through $ai_gateway_model, headers an operator sets:
    // no control characters (a CR/LF would start a header of its own)
    summary.model = field(
        raw(0),
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
        raw(1),
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
    summary.max_tokens = field(raw(2), "max_tokens", COUNT, plain_count, count)?;
    summary.max_completion_tokens =
        field(raw(3), "max_completion_tokens", COUNT, plain_count, count)?;
    summary.max_output_tokens = field(raw(4), "max_output_tokens", COUNT, plain_count, count)?;
    array(raw(5), "messages")?;
    array(raw(6), "tools")?;
    summary.spans = BodySpans {
        model: found[0],
        messages: found[5],
        tools: found[6],
        system: found[7],
        functions: found[8],
        input: found[9],
        instructions: found[10],
        prompt: found[11],
        stream_options: found[12],
    };
    Ok((summary, Some(text)))
}

/// Checks the body's syntax in one pass and finds where the top-level fields lie. A field
/// the gateway reads that appears twice is refused (which one would the provider read?).
fn top_level(body: &[u8]) -> Result<Found, GatewayError> {
    let mut check = Check::new(body);
    let syntax = |stop: Stop| syntax_error(body, stop);
    let mut found: Found = [None; FIELDS.len()];
    let open = check.ws(0);
    if !check.is(open, b'{') {
        // a valid document that is not an object, or no document at all
        return Err(match check.document() {
            Ok(()) => not_an_object(),
            Err(stop) => syntax(stop),
        });
    }
    let mut at = check.ws(open + 1);
    if check.is(at, b'}') {
        at += 1;
    } else {
        loop {
            let key_at = check.ws(at);
            let (key_end, escaped) = check.string(key_at).map_err(syntax)?;
            let key = &body[key_at + 1..key_end - 1];
            let slot = if escaped {
                serde_json::from_slice::<String>(&body[key_at..key_end])
                    .ok()
                    .and_then(|k| FIELDS.iter().position(|f| *f == k.as_bytes()))
            } else {
                FIELDS.iter().position(|f| *f == key)
            };
            let value_at = check.ws(check.expect(key_end, b':').map_err(syntax)?);
            let value_end = check.value(value_at).map_err(syntax)?;
            if let Some(slot) = slot {
                if found[slot].replace((value_at, value_end)).is_some() {
                    let (line, column) = Stop {
                        at: key_end - 1,
                        eof: false,
                    }
                    .line_column(body);
                    return Err(GatewayError::InvalidJson {
                        detail: format!("duplicate field at line {line} column {column}"),
                    });
                }
            }
            at = check.ws(value_end);
            match body.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => {
                    return Err(syntax(Stop {
                        at,
                        eof: at >= body.len(),
                    }))
                }
            }
        }
    }
    let end = check.ws(at);
    if end < body.len() {
        return Err(syntax(Stop {
            at: end,
            eof: false,
        }));
    }
    Ok(found)
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
    raw: Option<&str>,
    param: &'static str,
    expected: &'static str,
    quick: impl FnOnce(&str) -> Option<T>,
    convert: impl FnOnce(Value) -> Option<Option<T>>,
) -> Result<Option<T>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw == "null" {
        return Ok(None);
    }
    if let Some(v) = quick(raw) {
        return Ok(Some(v));
    }
    // the body was checked already, so this parse does not fail; were it to, the value is
    // not what the field needs
    let value: Value =
        serde_json::from_str(raw).map_err(|_| GatewayError::InvalidField { param, expected })?;
    if value.is_null() {
        return Ok(None);
    }
    convert(value).ok_or(GatewayError::InvalidField { param, expected })
}

/// Checks that a field is an array (or null).
fn array(raw: Option<&str>, param: &'static str) -> Result<(), GatewayError> {
    match raw.map(|r| r.as_bytes().first()) {
        None | Some(Some(b'[' | b'n')) => Ok(()),
        _ => Err(GatewayError::InvalidField {
            param,
            expected: "an array",
        }),
    }
}

/// A syntax error names a position, never content.
fn syntax_error(body: &[u8], stop: Stop) -> GatewayError {
    let what = if stop.eof {
        "unexpected end of input"
    } else {
        "syntax error"
    };
    let (line, column) = stop.line_column(body);
    GatewayError::InvalidJson {
        detail: format!("{what} at line {line} column {column}"),
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
