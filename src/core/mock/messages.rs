//! Anthropic Messages: a `message` JSON, or `message_start`, `content_block_*`,
//! `message_delta` and `message_stop` events.

use serde_json::{json, Value};

use super::prompt::parse_prompt;
use super::{
    anthropic_error, json_reply, limited_pieces, sse, stream_reply, MockReply, MockRequest,
};

pub(super) fn reply(req: &MockRequest<'_>) -> MockReply {
    let (doc, p) = match parse_prompt(req.body) {
        Ok(ok) => ok,
        Err(msg) => return anthropic_error(400, "invalid_request_error", &msg),
    };
    if doc.get("max_tokens").and_then(Value::as_u64).is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    // Anthropic honours max_tokens only
    let (pieces, cut) = limited_pieces(doc.get("max_tokens").and_then(Value::as_u64));
    let output = pieces.len() as u64;
    let id = format!("msg_mock{:016x}", req.seq);
    let stop = if cut { "max_tokens" } else { "end_turn" };

    if !p.stream {
        return json_reply(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": p.model,
                "content": [{"type": "text", "text": pieces.concat()}],
                "stop_reason": stop, "stop_sequence": null,
                "usage": {"input_tokens": p.prompt_tokens, "output_tokens": output,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }),
        );
    }

    let event = |name: &str, data: Value| sse(Some(name), &data.to_string());
    let mut chunks = Vec::with_capacity(pieces.len() + 6);
    chunks.push(event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": p.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": p.prompt_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    ));
    chunks.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}}),
    ));
    chunks.push(event("ping", json!({"type": "ping"})));
    for piece in &pieces {
        chunks.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    chunks.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": output}}),
    ));
    chunks.push(event("message_stop", json!({"type": "message_stop"})));
    stream_reply(chunks)
}
