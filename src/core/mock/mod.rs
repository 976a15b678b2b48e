//! The built-in mock LLM provider: OpenAI chat completions and Responses (JSON and SSE),
//! Anthropic messages (JSON and SSE), OpenAI embeddings and a model list, answered with a
//! fixed text (embeddings: vectors derived from the input).
//!
//! It exists for demos (`make run`), tests and load tests: responses look like the real
//! providers' (ids, objects, `usage`, `[DONE]`, Anthropic's and Responses' event names),
//! honour `max_tokens` / `max_output_tokens`, `stream` and `stream_options.include_usage`, and
//! errors come in the provider's own shape. Token counts are the mock's own: one "token" per
//! word piece of the reply, and roughly one prompt token per 4 bytes of message text plus 3
//! per message.
//!
//! One file per API: `chat.rs` (OpenAI Chat Completions), `messages.rs` (Anthropic
//! Messages), `responses.rs` (OpenAI Responses), `embeddings.rs`; `prompt.rs` reads the
//! request fields they share.

mod chat;
mod embeddings;
mod messages;
mod prompt;
mod responses;

use serde_json::{json, Value};

/// The reply text; split into word pieces, each counted as one completion token.
pub const REPLY_TEXT: &str = "Hello! This is a mock reply from the AI gateway's built-in \
    provider. It answers every request with the same text, so clients, streaming and limits \
    can be tried without a real model.";

/// Models listed by `GET /v1/models`.
const MODELS: [&str; 4] = [
    "mock-gpt",
    "gpt-4o-mini",
    "claude-haiku-4-5",
    "text-embedding-3-small",
];

/// Which API a request path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAiChat,
    AnthropicMessages,
    OpenAiResponses,
    Embeddings,
    Models,
    Unknown,
}

impl Api {
    pub fn from_path(path: &[u8]) -> Api {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.ends_with(b"/chat/completions") {
            Api::OpenAiChat
        } else if path.ends_with(b"/messages") {
            Api::AnthropicMessages
        } else if path.ends_with(b"/responses") {
            Api::OpenAiResponses
        } else if path.ends_with(b"/embeddings") {
            Api::Embeddings
        } else if path.ends_with(b"/models") {
            Api::Models
        } else {
            Api::Unknown
        }
    }
}

/// A complete mock response. For streams every element of `chunks` is one SSE event, sent
/// one by one with the configured interval; otherwise `chunks` holds the whole body.
#[derive(Debug)]
pub struct MockReply {
    pub status: u16,
    pub content_type: &'static str,
    pub stream: bool,
    pub chunks: Vec<Vec<u8>>,
}

/// Request facts the mock cannot know by itself.
#[derive(Debug, Clone, Copy)]
pub struct MockRequest<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub body: &'a [u8],
    /// Unix time for `created`.
    pub now: u64,
    /// A per-request number for ids.
    pub seq: u64,
}

/// Builds the mock's answer to a request.
pub fn reply(req: &MockRequest<'_>) -> MockReply {
    let api = Api::from_path(req.path);
    let post = req.method == b"POST";
    match api {
        Api::Models if req.method == b"GET" => models(),
        Api::OpenAiChat if post => chat::reply(req),
        Api::AnthropicMessages if post => messages::reply(req),
        Api::OpenAiResponses if post => responses::reply(req),
        Api::Embeddings if post => embeddings::reply(req),
        Api::Unknown => openai_error(
            404,
            "invalid_request_error",
            "unknown_url",
            "Unknown request URL.",
        ),
        _ => openai_error(
            405,
            "invalid_request_error",
            "method_not_allowed",
            "Method not allowed for this URL.",
        ),
    }
}

/// Splits the reply text into word pieces (" is", " a", "!").
pub fn reply_pieces() -> Vec<&'static str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in REPLY_TEXT.char_indices() {
        if i > start && (c == ' ' || c.is_ascii_punctuation() && c != '\'') {
            pieces.push(&REPLY_TEXT[start..i]);
            start = i;
        }
    }
    pieces.push(&REPLY_TEXT[start..]);
    pieces
}

fn json_reply(status: u16, body: &Value) -> MockReply {
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    MockReply {
        status,
        content_type: "application/json",
        stream: false,
        chunks: vec![bytes],
    }
}

fn openai_error(status: u16, kind: &str, code: &str, message: &str) -> MockReply {
    json_reply(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> MockReply {
    json_reply(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn models() -> MockReply {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "ai-gateway-mock"}))
        .collect();
    json_reply(200, &json!({"object": "list", "data": data}))
}

/// The pieces of the reply allowed by `max_tokens`, and whether it was cut.
fn limited_pieces(max_tokens: Option<u64>) -> (Vec<&'static str>, bool) {
    let mut pieces = reply_pieces();
    let limit = max_tokens.map_or(usize::MAX, |m| m.max(1) as usize);
    let cut = pieces.len() > limit;
    pieces.truncate(limit);
    (pieces, cut)
}

fn sse(event: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    out.into_bytes()
}

fn stream_reply(chunks: Vec<Vec<u8>>) -> MockReply {
    MockReply {
        status: 200,
        content_type: "text/event-stream",
        stream: true,
        chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn call(method: &str, path: &str, body: &str) -> MockReply {
        reply(&MockRequest {
            method: method.as_bytes(),
            path: path.as_bytes(),
            body: body.as_bytes(),
            now: 1_800_000_000,
            seq: 7,
        })
    }

    pub(super) fn json_of(r: &MockReply) -> Value {
        assert!(!r.stream);
        serde_json::from_slice(&r.chunks[0]).expect("json body")
    }

    /// Parses SSE events into (event name, data) pairs.
    pub(super) fn events(r: &MockReply) -> Vec<(Option<String>, String)> {
        assert!(r.stream);
        r.chunks
            .iter()
            .map(|c| {
                let text = std::str::from_utf8(c).unwrap();
                assert!(text.ends_with("\n\n"), "event must end with a blank line");
                let mut name = None;
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = d.to_string();
                    }
                }
                (name, data)
            })
            .collect()
    }

    const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"Say hi"}]}"#;

    #[test]
    fn pieces_rebuild_the_text() {
        let pieces = reply_pieces();
        assert!(pieces.len() > 20);
        assert_eq!(pieces.concat(), REPLY_TEXT);
        assert!(pieces.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn openai_json() {
        let r = call("POST", "/v1/chat/completions", CHAT);
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "mock-gpt");
        assert_eq!(v["choices"][0]["message"]["content"], REPLY_TEXT);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let u = &v["usage"];
        assert_eq!(u["completion_tokens"], reply_pieces().len());
        // 7 bytes of text -> 2, + 3 per message + 3
        assert_eq!(u["prompt_tokens"], 8);
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
        );
    }

    #[test]
    fn openai_max_tokens_cuts_with_length() {
        let r = call(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"m","messages":[],"max_tokens":3}"#,
        );
        let v = json_of(&r);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["choices"][0]["message"]["content"], "Hello! This");
    }

    #[test]
    fn openai_stream_with_and_without_usage() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let ev = events(&call("POST", "/v1/chat/completions", body));
        assert_eq!(ev.last().unwrap().1, "[DONE]");
        let datas: Vec<Value> = ev[..ev.len() - 1]
            .iter()
            .map(|(_, d)| serde_json::from_str(d).unwrap())
            .collect();
        assert!(datas.iter().all(|d| d.get("usage").is_none()));
        let text: String = datas
            .iter()
            .filter_map(|d| d["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, REPLY_TEXT);
        assert_eq!(datas.last().unwrap()["choices"][0]["finish_reason"], "stop");

        let body =
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        let ev = events(&call("POST", "/v1/chat/completions", body));
        let usage_chunk: Value = serde_json::from_str(&ev[ev.len() - 2].1).unwrap();
        assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
        assert_eq!(
            usage_chunk["usage"]["completion_tokens"],
            reply_pieces().len()
        );
        let first: Value = serde_json::from_str(&ev[0].1).unwrap();
        assert!(first["usage"].is_null() && first.get("usage").is_some());
    }

    #[test]
    fn anthropic_json_and_stream() {
        let body = r#"{"model":"claude","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
        let v = json_of(&call("POST", "/v1/messages", body));
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0]["text"], REPLY_TEXT);
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["output_tokens"], reply_pieces().len());
        // 8 + 2 bytes -> 3, + 3 + 3
        assert_eq!(v["usage"]["input_tokens"], 9);

        let body = r#"{"model":"claude","max_tokens":2,"stream":true,"messages":[]}"#;
        let ev = events(&call("POST", "/v1/messages", body));
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta: Value = serde_json::from_str(&ev[6].1).unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
        assert_eq!(delta["usage"]["output_tokens"], 2);
    }

    #[test]
    fn errors_in_the_providers_shape() {
        let r = call("POST", "/v1/chat/completions", "{oops");
        assert_eq!(r.status, 400);
        assert!(json_of(&r)["error"]["message"].is_string());
        let r = call("POST", "/v1/chat/completions", r#"{"messages":[]}"#);
        assert_eq!(r.status, 400);
        let r = call("POST", "/v1/messages", r#"{"model":"c","messages":[]}"#);
        assert_eq!(r.status, 400);
        assert_eq!(json_of(&r)["type"], "error");
        assert_eq!(call("GET", "/v1/chat/completions", "").status, 405);
        assert_eq!(call("POST", "/v2/other", "").status, 404);
    }

    #[test]
    fn model_list() {
        let v = json_of(&call("GET", "/v1/models", ""));
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["id"], "mock-gpt");
    }
}
