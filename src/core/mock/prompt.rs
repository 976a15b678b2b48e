//! The request fields the mock's chat-style APIs share (model, stream, output limit, and
//! the mock's prompt count).

use serde_json::Value;

/// Parsed request fields the mock cares about.
pub(super) struct Prompt {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub prompt_tokens: u64,
}

pub(super) fn parse_prompt(body: &[u8]) -> Result<(Value, Prompt), String> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| "We could not parse the JSON body of your request.".to_string())?;
    if !doc.is_object() {
        return Err("The request body must be a JSON object.".to_string());
    }
    let model = doc
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| "you must provide a model parameter".to_string())?
        .to_string();
    let messages = doc
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| "'messages' is a required property".to_string())?;
    let mut text_bytes = 0usize;
    for m in messages {
        text_bytes += content_bytes(m.get("content"));
    }
    text_bytes += content_bytes(doc.get("system"));
    let prompt_tokens = (text_bytes as u64).div_ceil(4) + 3 * messages.len() as u64 + 3;
    let max_tokens = doc
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| doc.get("max_tokens").and_then(Value::as_u64));
    let prompt = Prompt {
        model,
        stream: doc.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: doc
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_tokens,
        prompt_tokens,
    };
    Ok((doc, prompt))
}

pub(super) fn content_bytes(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(s)) => s.len(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(str::len)
            .sum(),
        _ => 0,
    }
}
