//! OpenAI Chat Completions: `chat.completion` JSON, or `chat.completion.chunk` events and
//! `data: [DONE]` (with the usage-only chunk when `stream_options.include_usage` asks).

use serde_json::{json, Value};

use super::prompt::parse_prompt;
use super::{json_reply, limited_pieces, openai_error, sse, stream_reply, MockReply, MockRequest};

pub(super) fn reply(req: &MockRequest<'_>) -> MockReply {
    let p = match parse_prompt(req.body) {
        Ok((_, p)) => p,
        Err(msg) => return openai_error(400, "invalid_request_error", "invalid_request", &msg),
    };
    let (pieces, cut) = limited_pieces(p.max_tokens);
    let completion = pieces.len() as u64;
    let usage = json!({
        "prompt_tokens": p.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": p.prompt_tokens + completion,
    });
    let id = format!("chatcmpl-mock{:012x}", req.seq);
    let finish = if cut { "length" } else { "stop" };

    if !p.stream {
        let text: String = pieces.concat();
        return json_reply(
            200,
            &json!({
                "id": id, "object": "chat.completion", "created": req.now, "model": p.model,
                "choices": [{"index": 0,
                             "message": {"role": "assistant", "content": text, "refusal": null},
                             "logprobs": null, "finish_reason": finish}],
                "usage": usage, "system_fingerprint": null,
            }),
        );
    }

    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": req.now, "model": p.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if p.include_usage {
            c["usage"] = Value::Null;
        }
        sse(None, &c.to_string())
    };
    let mut chunks = Vec::with_capacity(pieces.len() + 4);
    chunks.push(chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    ));
    for piece in &pieces {
        chunks.push(chunk(json!({"content": piece}), None));
    }
    chunks.push(chunk(json!({}), Some(finish)));
    if p.include_usage {
        let last = json!({
            "id": id, "object": "chat.completion.chunk", "created": req.now, "model": p.model,
            "system_fingerprint": null, "choices": [], "usage": usage,
        });
        chunks.push(sse(None, &last.to_string()));
    }
    chunks.push(sse(None, "[DONE]"));
    stream_reply(chunks)
}
