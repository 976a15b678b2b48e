//! Lowering a request's output limit to a namespace's cap (`output_tokens` with `clamp`).
//!
//! The body is edited as text: the number of each output-limit field the client sent
//! (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) that is above the cap is
//! replaced; when the client sent none, the API's own field is added. Everything else stays
//! byte for byte.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Limits<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_output_tokens: Option<&'a RawValue>,
}

/// A field that is there, `null` included (plain `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The field an API takes its output limit in, by request path: Chat Completions
/// `max_completion_tokens` (OpenAI's reasoning models refuse `max_tokens`), Responses
/// `max_output_tokens`, and `max_tokens` elsewhere (Anthropic Messages, legacy completions).
pub fn output_field(path: &[u8]) -> &'static str {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if path.ends_with(b"/chat/completions") {
        "max_completion_tokens"
    } else if path.ends_with(b"/responses") {
        "max_output_tokens"
    } else {
        "max_tokens"
    }
}

/// The body with its output limit at most `cap`, or `None` when nothing needs to change (or
/// the body is not a JSON object).
pub fn clamp_output(body: &[u8], cap: u64, field_if_absent: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let limits: Limits<'_> = serde_json::from_str(text).ok()?;
    let mut spans: Vec<(usize, usize)> = [
        limits.max_tokens,
        limits.max_completion_tokens,
        limits.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .map(|v| {
        let start = v.get().as_ptr() as usize - text.as_ptr() as usize;
        (start, start + v.get().len())
    })
    .collect();
    let number = cap.to_string();
    let mut out = Vec::with_capacity(body.len() + 32);
    if spans.is_empty() {
        let open = text.find('{')?;
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(format!("\"{field_if_absent}\":{number}").as_bytes());
        if !text[open + 1..].trim_start().starts_with('}') {
            out.push(b',');
        }
        out.extend_from_slice(&body[open + 1..]);
        return Some(out);
    }
    spans.retain(|(s, e)| text[*s..*e].parse::<u64>().map_or(true, |n| n > cap));
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut at = 0;
    for (s, e) in spans {
        out.extend_from_slice(&body[at..s]);
        out.extend_from_slice(number.as_bytes());
        at = e;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clamp(body: &str, cap: u64) -> Option<String> {
        clamp_output(body.as_bytes(), cap, "max_tokens").map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn lowers_what_is_above_the_cap() {
        assert_eq!(
            clamp(r#"{"model":"m","max_tokens":4096,"messages":[]}"#, 100).as_deref(),
            Some(r#"{"model":"m","max_tokens":100,"messages":[]}"#)
        );
        assert_eq!(
            clamp(r#"{"max_completion_tokens": 500, "max_tokens": 50}"#, 100).as_deref(),
            Some(r#"{"max_completion_tokens": 100, "max_tokens": 50}"#)
        );
        assert_eq!(clamp(r#"{"max_tokens":100}"#, 100), None);
        // a "max_tokens" inside a message is not the field
        assert_eq!(
            clamp(
                r#"{"messages":[{"content":"max_tokens: 9"}],"max_tokens":7e3}"#,
                10
            )
            .as_deref(),
            Some(r#"{"messages":[{"content":"max_tokens: 9"}],"max_tokens":10}"#)
        );
    }

    #[test]
    fn every_field_above_the_cap_is_lowered() {
        assert_eq!(
            clamp(
                r#"{"max_tokens":100000,"max_completion_tokens":10,"max_output_tokens":900}"#,
                100
            )
            .as_deref(),
            Some(r#"{"max_tokens":100,"max_completion_tokens":10,"max_output_tokens":100}"#)
        );
    }

    #[test]
    fn adds_the_field_when_absent() {
        assert_eq!(
            clamp(r#" {"model":"m"}"#, 64).as_deref(),
            Some(r#" {"max_tokens":64,"model":"m"}"#)
        );
        assert_eq!(clamp("{}", 64).as_deref(), Some(r#"{"max_tokens":64}"#));
        // null is as good as absent: replaced, never duplicated
        assert_eq!(
            clamp(r#"{"max_tokens":null}"#, 64).as_deref(),
            Some(r#"{"max_tokens":64}"#)
        );
        assert_eq!(clamp("[1]", 64), None);
    }

    #[test]
    fn fields_by_api() {
        assert_eq!(
            output_field(b"/v1/chat/completions"),
            "max_completion_tokens"
        );
        assert_eq!(output_field(b"/v1/responses/"), "max_output_tokens");
        assert_eq!(output_field(b"/v1/messages"), "max_tokens");
        assert_eq!(output_field(b"/v1/completions"), "max_tokens");
    }
}
