//! The output cap on OpenAI Responses streams.

use serde_json::{json, Value};

use super::tests::{capped, rewrite_at, run};
use super::*;
use crate::core::policy::stream_cap::StreamApi;
use crate::core::tokens::Encoding;

/// One event as OpenAI sends it (`event:` line, then the data with its `type` and
/// `sequence_number`).
fn ev(name: &str, seq: u64, mut data: Value) -> String {
    data["type"] = Value::from(name);
    data["sequence_number"] = Value::from(seq);
    format!("event: {name}\ndata: {data}\n\n")
}

fn response(status: &str, usage: Value) -> Value {
    json!({"id": "resp_1", "object": "response", "created_at": 1741290958, "status": status,
           "model": "gpt-4.1", "output": [], "usage": usage})
}

fn head(seq: &mut u64) -> String {
    let mut s = String::new();
    for name in ["response.created", "response.in_progress"] {
        s += &ev(
            name,
            *seq,
            json!({"response": response("in_progress", Value::Null)}),
        );
        *seq += 1;
    }
    s
}

fn delta(seq: u64, text: &str) -> String {
    ev(
        "response.output_text.delta",
        seq,
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": text,
               "logprobs": []}),
    )
}

/// A message streamed in `words`, then OpenAI's closing events and `response.completed`.
fn message_stream(words: &[&str]) -> String {
    let mut seq = 0;
    let mut s = head(&mut seq);
    s += &ev(
        "response.output_item.added",
        2,
        json!({"output_index": 0, "item": {"id": "msg_1", "type": "message",
               "status": "in_progress", "content": [], "role": "assistant"}}),
    );
    s += &ev(
        "response.content_part.added",
        3,
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "text": ""}}),
    );
    seq = 4;
    for w in words {
        s += &delta(seq, w);
        seq += 1;
    }
    let text = words.concat();
    s += &ev(
        "response.output_text.done",
        seq,
        json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
    );
    s += &ev(
        "response.completed",
        seq + 1,
        json!({"response": response("completed",
            json!({"input_tokens": 5, "output_tokens": words.len(), "total_tokens": 5 + words.len()}))}),
    );
    s
}

/// The (name, data) of each event of a stream.
fn events(s: &str) -> Vec<(String, Value)> {
    s.split_terminator("\n\n")
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert_eq!(lines.next(), None);
            (name.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn below_the_cap_the_stream_passes_byte_for_byte() {
    let s = message_stream(&["One", " two", " three"]);
    for cut in [1, 7, 64, s.len()] {
        let (out, w) = run(3, StreamApi::Responses, &s, cut);
        assert_eq!(out, s, "cut {cut}");
        assert!(!w.ended());
        assert_eq!(capped(&w).tokens_sent(), 3);
    }
}

#[test]
fn cut_in_the_middle_of_the_deltas_ends_as_openai_does() {
    let s = message_stream(&["One", " two", " three", " four", " five"]);
    let sent_part: String = s
        .split("event: response.output_text.delta")
        .collect::<Vec<_>>()[..4]
        .join("event: response.output_text.delta");
    for cut in [1, 9, 100, s.len()] {
        let (out, w) = run(3, StreamApi::Responses, &s, cut);
        assert!(w.ended(), "cut {cut}");
        assert_eq!(capped(&w).tokens_sent(), 3);
        assert!(out.starts_with(&sent_part), "cut {cut}");
        let ending = events(&out[sent_part.len()..]);
        let names: Vec<&str> = ending.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.incomplete"
            ]
        );
        for (i, (name, d)) in ending.iter().enumerate() {
            assert_eq!(d["type"], name.as_str());
            // the event refused was number 7: the ending goes on from there
            assert_eq!(d["sequence_number"], 7 + i as u64, "{name}");
        }
        let done = &ending[0].1;
        assert_eq!(done["text"], "One two three");
        assert_eq!(
            (
                &done["item_id"],
                &done["output_index"],
                &done["content_index"]
            ),
            (&json!("msg_1"), &json!(0), &json!(0))
        );
        let part = &ending[1].1["part"];
        assert_eq!(part["type"], "output_text");
        assert_eq!(part["text"], "One two three");
        let item = &ending[2].1["item"];
        assert_eq!(item["id"], "msg_1");
        assert_eq!(item["status"], "incomplete");
        assert_eq!(item["role"], "assistant");
        assert_eq!(item["content"][0]["text"], "One two three");
        let r = &ending[3].1["response"];
        assert_eq!(r["id"], "resp_1");
        assert_eq!(r["model"], "gpt-4.1");
        assert_eq!(r["created_at"], 1741290958);
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0], *item);
        assert_eq!(r["usage"]["output_tokens"], 3);
        assert_eq!(r["usage"]["input_tokens"], 0);
        assert_eq!(r["usage"]["total_tokens"], 3);
    }
}

#[test]
fn the_tracker_still_reads_the_providers_usage_after_the_cut() {
    let s = message_stream(&["One", " two", " three", " four"]);
    let c = StreamCap::new(2, StreamApi::Responses, Encoding::O200k);
    let (_, w, t) = rewrite_at(false, Some(c), s.as_bytes(), &[]);
    assert!(w.ended());
    assert_eq!(t.reported().input, Some(5));
    assert_eq!(t.reported().output, Some(4));
}

#[test]
fn the_prompt_count_goes_into_the_endings_usage() {
    let s = message_stream(&["One", " two", " three"]);
    let mut c = StreamCap::new(1, StreamApi::Responses, Encoding::O200k);
    c.set_prompt_tokens(Some(12));
    let (out, _, _) = rewrite_at(false, Some(c), s.as_bytes(), &[]);
    let out = String::from_utf8(out).unwrap();
    let (_, last) = events(&out).pop().unwrap();
    assert_eq!(last["response"]["usage"]["input_tokens"], 12);
    assert_eq!(last["response"]["usage"]["output_tokens"], 1);
    assert_eq!(last["response"]["usage"]["total_tokens"], 13);
}

/// A reasoning item closed by the provider, then a function call cut in its arguments: the
/// call is closed (arguments sent, call id and name), the reasoning is listed as completed.
#[test]
fn a_function_call_cut_in_its_arguments() {
    let mut seq = 0;
    let mut s = head(&mut seq);
    let mut push = |s: &mut String, name: &str, data: Value| {
        *s += &ev(name, seq, data);
        seq += 1;
    };
    push(
        &mut s,
        "response.output_item.added",
        json!({"output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
    );
    push(
        &mut s,
        "response.reasoning_summary_part.added",
        json!({"item_id": "rs_1", "output_index": 0, "summary_index": 0,
               "part": {"type": "summary_text", "text": ""}}),
    );
    push(
        &mut s,
        "response.reasoning_summary_text.delta",
        json!({"item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "Think"}),
    );
    push(
        &mut s,
        "response.reasoning_summary_text.done",
        json!({"item_id": "rs_1", "output_index": 0, "summary_index": 0, "text": "Think"}),
    );
    push(
        &mut s,
        "response.reasoning_summary_part.done",
        json!({"item_id": "rs_1", "output_index": 0, "summary_index": 0,
               "part": {"type": "summary_text", "text": "Think"}}),
    );
    push(
        &mut s,
        "response.output_item.done",
        json!({"output_index": 0, "item": {"id": "rs_1", "type": "reasoning",
               "summary": [{"type": "summary_text", "text": "Think"}]}}),
    );
    push(
        &mut s,
        "response.output_item.added",
        json!({"output_index": 1, "item": {"id": "fc_1", "type": "function_call",
               "status": "in_progress", "arguments": "", "call_id": "call_9",
               "name": "get_weather"}}),
    );
    for d in ["{\"city\":", "\"Paris\"", ",\"unit\":\"celsius\"}"] {
        push(
            &mut s,
            "response.function_call_arguments.delta",
            json!({"item_id": "fc_1", "output_index": 1, "delta": d}),
        );
    }
    // "Think" 1, {"city": 3, "Paris" 3: 7; the last delta passes 8
    let (out, w) = run(8, StreamApi::Responses, &s, 13);
    assert!(w.ended());
    let all = events(&out);
    let cut = all
        .iter()
        .position(|(_, d)| d["delta"] == ",\"unit\":\"celsius\"}")
        .map_or(all.len(), |p| p);
    assert_eq!(cut, all.len(), "the last delta is not sent");
    let ending: Vec<&(String, Value)> = all.iter().rev().take(3).rev().collect();
    assert_eq!(ending[0].0, "response.function_call_arguments.done");
    assert_eq!(ending[0].1["arguments"], "{\"city\":\"Paris\"");
    assert_eq!(ending[0].1["item_id"], "fc_1");
    assert_eq!(ending[0].1["output_index"], 1);
    assert_eq!(ending[1].0, "response.output_item.done");
    let item = &ending[1].1["item"];
    assert_eq!(
        (&item["status"], &item["call_id"], &item["name"]),
        (
            &json!("incomplete"),
            &json!("call_9"),
            &json!("get_weather")
        )
    );
    assert_eq!(ending[2].0, "response.incomplete");
    let output = ending[2].1["response"]["output"].as_array().unwrap();
    assert_eq!(output.len(), 2);
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["summary"][0]["text"], "Think");
    assert_eq!(output[1], *item);
    // sequence numbers go on without a gap
    for (i, (_, d)) in all.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
}

#[test]
fn audio_is_not_counted_as_text() {
    let mut seq = 0;
    let mut s = head(&mut seq);
    s += &ev(
        "response.audio.delta",
        seq,
        json!({"delta": "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=".repeat(20)}),
    );
    let (out, w) = run(2, StreamApi::Responses, &s, 50);
    assert!(!w.ended());
    assert_eq!(out, s);
}

#[test]
fn an_event_larger_than_held_ends_the_stream_before_it() {
    let mut s = message_stream(&["Hi"]);
    let at = s.find("event: response.output_text.done").unwrap();
    s.insert_str(at, &delta(5, &"x".repeat(2 * EVENT_MAX)));
    for cut in [4096, 65536] {
        let (out, w) = run(u64::MAX, StreamApi::Responses, &s, cut);
        assert!(w.ended() && capped(&w).oversized(), "cut {cut}");
        assert!(out.len() < 8192, "nothing of the big event went out");
        let ending = events(&out);
        let (name, last) = ending.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(last["sequence_number"], 8);
        assert_eq!(w.pending.capacity(), 0, "its memory is given back");
    }
}
