//! OpenAI Responses (`POST .../responses`): a `response` object, or its events with the real
//! names and `sequence_number`s: `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`
//! per word piece, `response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done`, then `response.completed` with the usage. A reply cut by
//! `max_output_tokens` ends as OpenAI's does: the message `"status":"incomplete"`, and
//! `response.incomplete` with `"incomplete_details":{"reason":"max_output_tokens"}`.

use serde_json::{json, Value};

use super::prompt::content_bytes;
use super::{json_reply, limited_pieces, openai_error, sse, stream_reply, MockReply, MockRequest};

/// The request fields the mock reads.
struct Request {
    model: String,
    stream: bool,
    max_output_tokens: Option<u64>,
    instructions: Option<String>,
    prompt_tokens: u64,
}

fn parse(body: &[u8]) -> Result<Request, (&'static str, String)> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| {
        (
            "invalid_json",
            "We could not parse the JSON body of your request.".to_string(),
        )
    })?;
    if !doc.is_object() {
        return Err((
            "invalid_request",
            "The request body must be a JSON object.".to_string(),
        ));
    }
    let model = doc.get("model").and_then(Value::as_str).ok_or((
        "missing_required_parameter",
        "Missing required parameter: 'model'.".to_string(),
    ))?;
    // `input` is a string (one user message) or a list of items (messages and others)
    let (text_bytes, items) = match doc.get("input") {
        Some(Value::String(s)) => (s.len(), 1),
        Some(Value::Array(list)) => (
            list.iter().map(|i| content_bytes(i.get("content"))).sum(),
            list.len(),
        ),
        None | Some(Value::Null) => (0, 0),
        Some(_) => {
            return Err((
                "invalid_type",
                "Invalid type for 'input': expected a string or an array of input items."
                    .to_string(),
            ))
        }
    };
    let instructions = doc
        .get("instructions")
        .and_then(Value::as_str)
        .map(str::to_string);
    let text_bytes = text_bytes + instructions.as_ref().map_or(0, String::len);
    let max_output_tokens = match doc.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or((
            "integer_below_min_value",
            "Invalid 'max_output_tokens': expected a positive integer.".to_string(),
        ))?),
    };
    Ok(Request {
        model: model.to_string(),
        stream: doc.get("stream").and_then(Value::as_bool).unwrap_or(false),
        max_output_tokens,
        instructions,
        prompt_tokens: (text_bytes as u64).div_ceil(4) + 3 * items as u64 + 3,
    })
}

/// The answer to `POST .../responses`.
pub(super) fn reply(req: &MockRequest<'_>) -> MockReply {
    let r = match parse(req.body) {
        Ok(r) => r,
        Err((code, msg)) => return openai_error(400, "invalid_request_error", code, &msg),
    };
    let (pieces, cut) = limited_pieces(r.max_output_tokens);
    let output = pieces.len() as u64;
    let id = format!("resp_mock{:016x}", req.seq);
    let item_id = format!("msg_mock{:016x}", req.seq);
    let status = if cut { "incomplete" } else { "completed" };
    let text: String = pieces.concat();
    let part = |text: &str| json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
    let item = |status: &str, content: Vec<Value>| {
        json!({"id": item_id, "type": "message", "status": status, "role": "assistant",
               "content": content})
    };
    let usage = json!({
        "input_tokens": r.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": r.prompt_tokens + output,
    });
    // the response object; `done` is false for the in-progress snapshots of a stream
    let response = |done: bool| {
        let (status, output, usage, details) = if done {
            (
                status,
                vec![item(status, vec![part(&text)])],
                usage.clone(),
                if cut {
                    json!({"reason": "max_output_tokens"})
                } else {
                    Value::Null
                },
            )
        } else {
            ("in_progress", Vec::new(), Value::Null, Value::Null)
        };
        json!({
            "id": id, "object": "response", "created_at": req.now, "status": status,
            "background": false, "error": null, "incomplete_details": details,
            "instructions": r.instructions, "max_output_tokens": r.max_output_tokens,
            "model": r.model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "store": false, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": null, "metadata": {},
        })
    };
    if !r.stream {
        return json_reply(200, &response(true));
    }

    let mut chunks = Vec::with_capacity(pieces.len() + 9);
    let mut seq = 0u64;
    let mut event = |name: &str, mut data: Value| {
        data["type"] = Value::from(name);
        data["sequence_number"] = Value::from(seq);
        seq += 1;
        chunks.push(sse(Some(name), &data.to_string()));
    };
    event("response.created", json!({"response": response(false)}));
    event("response.in_progress", json!({"response": response(false)}));
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": item("in_progress", Vec::new())}),
    );
    let at = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    event(
        "response.content_part.added",
        with(json!({"part": part("")})),
    );
    for piece in &pieces {
        event(
            "response.output_text.delta",
            with(json!({"delta": piece, "logprobs": []})),
        );
    }
    event(
        "response.output_text.done",
        with(json!({"text": text, "logprobs": []})),
    );
    event(
        "response.content_part.done",
        with(json!({"part": part(&text)})),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": item(status, vec![part(&text)])}),
    );
    let last = if cut {
        "response.incomplete"
    } else {
        "response.completed"
    };
    event(last, json!({"response": response(true)}));
    stream_reply(chunks)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{call, events, json_of};
    use super::super::{reply_pieces, REPLY_TEXT};
    use serde_json::Value;

    #[test]
    fn json_response() {
        let r = call(
            "POST",
            "/v1/responses",
            r#"{"model":"gpt-4o-mini","input":"Say hi","instructions":"be brief"}"#,
        );
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        assert_eq!(v["object"], "response");
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(v["status"], "completed");
        assert!(v["incomplete_details"].is_null());
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["role"], "assistant");
        assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(v["output"][0]["content"][0]["text"], REPLY_TEXT);
        let u = &v["usage"];
        assert_eq!(u["output_tokens"], reply_pieces().len());
        // 6 + 8 bytes -> 4, + 3 for the one message + 3
        assert_eq!(u["input_tokens"], 10);
        assert_eq!(u["total_tokens"], 10 + reply_pieces().len());
        assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(u["output_tokens_details"]["reasoning_tokens"], 0);
    }

    #[test]
    fn input_as_a_list_of_messages() {
        let body = r#"{"model":"m","input":[{"role":"user","content":"12345678"},{"type":"message","role":"user","content":[{"type":"input_text","text":"1234"}]}]}"#;
        let v = json_of(&call("POST", "/v1/responses", body));
        // 12 bytes -> 3, + 2 * 3 + 3
        assert_eq!(v["usage"]["input_tokens"], 12);
    }

    #[test]
    fn max_output_tokens_makes_it_incomplete() {
        let body = r#"{"model":"m","input":"x","max_output_tokens":3}"#;
        let v = json_of(&call("POST", "/v1/responses", body));
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"][0]["status"], "incomplete");
        assert_eq!(v["output"][0]["content"][0]["text"], "Hello! This");
        assert_eq!(v["usage"]["output_tokens"], 3);
        assert_eq!(v["max_output_tokens"], 3);
    }

    fn datas(body: &str) -> Vec<(String, Value)> {
        events(&call("POST", "/v1/responses", body))
            .into_iter()
            .map(|(n, d)| (n.unwrap(), serde_json::from_str(&d).unwrap()))
            .collect()
    }

    #[test]
    fn stream_with_the_real_event_names() {
        let ev = datas(r#"{"model":"m","input":"hi","stream":true}"#);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        let n = reply_pieces().len();
        assert_eq!(names.len(), n + 8);
        assert_eq!(
            names[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ]
        );
        assert!(names[4..4 + n]
            .iter()
            .all(|n| *n == "response.output_text.delta"));
        assert_eq!(
            names[4 + n..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, (name, d)) in ev.iter().enumerate() {
            assert_eq!(d["type"], name.as_str());
            assert_eq!(d["sequence_number"], i);
        }
        let text: String = ev.iter().filter_map(|(_, d)| d["delta"].as_str()).collect();
        assert_eq!(text, REPLY_TEXT);
        assert_eq!(ev[0].1["response"]["status"], "in_progress");
        assert!(ev[0].1["response"]["usage"].is_null());
        let last = &ev.last().unwrap().1["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["usage"]["output_tokens"], n);
        assert_eq!(last["output"][0]["content"][0]["text"], REPLY_TEXT);
        assert_eq!(ev[n + 4].1["text"], REPLY_TEXT);
        assert_eq!(ev[5].1["item_id"], ev[2].1["item"]["id"]);
    }

    #[test]
    fn stream_cut_by_max_output_tokens_ends_incomplete() {
        let ev = datas(r#"{"model":"m","input":"hi","stream":true,"max_output_tokens":2}"#);
        let (name, last) = ev.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["usage"]["output_tokens"], 2);
        let item_done = &ev[ev.len() - 2].1;
        assert_eq!(item_done["item"]["status"], "incomplete");
        assert_eq!(item_done["item"]["content"][0]["text"], "Hello!");
    }

    #[test]
    fn errors_in_openai_shape() {
        for body in [
            "{oops",
            r#"{"input":"x"}"#,
            r#"{"model":"m","input":5}"#,
            r#"{"model":"m","input":"x","max_output_tokens":0}"#,
        ] {
            let r = call("POST", "/v1/responses", body);
            assert_eq!(r.status, 400, "{body}");
            assert_eq!(json_of(&r)["error"]["type"], "invalid_request_error");
        }
        assert_eq!(call("GET", "/v1/responses", "").status, 405);
    }
}
