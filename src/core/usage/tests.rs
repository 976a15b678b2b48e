use super::*;
use crate::core::tokens::{Encoding, PromptCount, Source};

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wor\\u006cd\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":2,\"total_tokens\":21,\"prompt_tokens_details\":{\"cached_tokens\":3},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello world\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

const RESPONSES_STREAM: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\" world\"}\n\n",
    "event: response.output_text.done\n",
    "data: {\"type\":\"response.output_text.done\",\"item_id\":\"m1\",\"text\":\"Hello world\"}\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hello world\"}]}],\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":123}}}\n\n",
);

fn track(framing: Framing, body: &str, cuts: &[usize]) -> ResponseTracker {
    let mut t = ResponseTracker::new(framing, Some(Encoding::O200k));
    let b = body.as_bytes();
    let mut start = 0;
    for &c in cuts {
        t.feed(&b[start..c]);
        start = c;
    }
    t.feed(&b[start..]);
    t.finish();
    t
}

/// The same result for the whole body, for every single split point, and byte by byte.
fn every_split(framing: Framing, body: &str) -> ResponseTracker {
    let whole = track(framing, body, &[]);
    for cut in 0..=body.len() {
        let t = track(framing, body, &[cut]);
        assert_eq!(t.reported(), whole.reported(), "cut at {cut}");
        assert_eq!(t.sink.text, whole.sink.text, "cut at {cut}");
    }
    let bytes: Vec<usize> = (1..body.len()).collect();
    let t = track(framing, body, &bytes);
    assert_eq!(t.reported(), whole.reported(), "byte by byte");
    assert_eq!(t.sink.text, whole.sink.text, "byte by byte");
    // one piece of the length the headers gave: the whole-document scan
    let mut w = ResponseTracker::new(framing, Some(Encoding::O200k));
    w.expect_len(body.len() as u64);
    w.feed(body.as_bytes());
    w.finish();
    assert_eq!(w.reported(), whole.reported(), "whole");
    assert_eq!(
        settle(Some(&w), || None),
        settle(Some(&whole), || None),
        "whole"
    );
    if w.sink.text.is_empty() && !whole.sink.text.is_empty() {
        // read usage first: the text was not needed
        assert!(framing == Framing::Json && w.reported().output.is_some());
    } else {
        assert_eq!(w.sink.text, whole.sink.text, "whole");
        assert_eq!(w.counted_completion(), whole.counted_completion(), "whole");
    }
    whole
}

#[test]
fn openai_chat_stream() {
    let t = every_split(Framing::Sse, OPENAI_STREAM);
    let r = t.reported();
    assert_eq!(
        (r.prompt(), r.output, r.total),
        (Some(19), Some(2), Some(21))
    );
    assert_eq!((r.cached(), r.reasoning), (Some(3), Some(0)));
    assert_eq!(t.sink.text, "Hello world");
    assert_eq!(t.sse.events(), 6);
}

#[test]
fn openai_usage_on_a_final_chunk_that_still_has_choices() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n"
    );
    let t = every_split(Framing::Sse, body);
    assert_eq!(
        (t.reported().prompt(), t.reported().output),
        (Some(5), Some(1))
    );
}

#[test]
fn anthropic_stream_adds_cache_tokens_to_the_prompt() {
    let t = every_split(Framing::Sse, ANTHROPIC_STREAM);
    let r = t.reported();
    assert_eq!(r.prompt(), Some(40), "25 + 5 written + 10 read");
    assert_eq!(
        r.output,
        Some(15),
        "message_delta's running count wins over message_start's"
    );
    assert_eq!(r.cached(), Some(10));
    assert_eq!(t.sink.text, "Hello world");
}

#[test]
fn responses_stream_counts_text_once() {
    let t = every_split(Framing::Sse, RESPONSES_STREAM);
    let r = t.reported();
    assert_eq!((r.prompt(), r.output), (Some(36), Some(87)));
    assert_eq!((r.cached(), r.reasoning), (Some(0), Some(64)));
    assert_eq!(
        t.sink.text, "Hello world",
        "not again from .done or .completed"
    );
}

#[test]
fn json_bodies_of_each_api() {
    let chat = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}"#;
    let t = every_split(Framing::Json, chat);
    assert_eq!(
        (t.reported().prompt(), t.reported().output),
        (Some(8), Some(2))
    );
    assert_eq!(t.sink.text, "Hello world");

    let anthropic = r#"{"id":"msg","type":"message","content":[{"type":"text","text":"Hello world"}],"usage":{"input_tokens":9,"cache_read_input_tokens":4,"output_tokens":3}}"#;
    let t = every_split(Framing::Json, anthropic);
    assert_eq!(
        (t.reported().prompt(), t.reported().output),
        (Some(13), Some(3))
    );
    assert_eq!(t.sink.text, "Hello world");

    let responses = r#"{"id":"resp","output":[{"type":"message","content":[{"type":"output_text","text":"Hello world"}]}],"usage":{"input_tokens":7,"output_tokens":2,"total_tokens":9}}"#;
    let t = every_split(Framing::Json, responses);
    assert_eq!(
        (t.reported().prompt(), t.reported().output),
        (Some(7), Some(2))
    );
    assert_eq!(t.sink.text, "Hello world");
}

#[test]
fn sse_framing_variants() {
    // CRLF and CR line ends, comments, other fields, no space after the colon, data split
    // over two lines, a final event without its blank line
    let body = concat!(
        ": keep-alive\r\n\r\n",
        "id: 1\r\nevent: x\r\ndata:{\"usage\":\r\ndata: {\"prompt_tokens\":4}}\r\n\r\n",
        "retry: 10\rdata: {\"usage\":{\"completion_tokens\":6}}\r\r",
        "data: {\"usage\":{\"total_tokens\":10}}"
    );
    let t = every_split(Framing::Sse, body);
    let r = t.reported();
    assert_eq!((r.input, r.output, r.total), (Some(4), Some(6), Some(10)));
    assert_eq!(t.sse.events(), 3);
}

#[test]
fn content_types() {
    assert_eq!(
        Framing::of_content_type(b"text/event-stream; charset=utf-8"),
        Some(Framing::Sse)
    );
    assert_eq!(
        Framing::of_content_type(b"Application/JSON"),
        Some(Framing::Json)
    );
    assert_eq!(
        Framing::of_content_type(b"application/problem+json"),
        Some(Framing::Json)
    );
    assert_eq!(Framing::of_content_type(b"text/html"), None);
    assert_eq!(Framing::of_content_type(b""), None);
}

fn counted_prompt() -> Option<PromptCount> {
    Some(PromptCount {
        tokens: 8,
        source: Source::Counted,
        encoding: Encoding::O200k,
    })
}

#[test]
fn settle_prefers_the_provider() {
    let t = track(Framing::Sse, OPENAI_STREAM, &[]);
    let u = settle(Some(&t), || panic!("no need to count"));
    assert_eq!(
        (u.prompt, u.completion, u.total()),
        (Some(19), Some(2), Some(21))
    );
    assert_eq!(u.source_str(), "provider");
}

#[test]
fn settle_counts_what_the_provider_did_not_report() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}]}\n\n",
        "data: [DONE]\n\n"
    );
    let t = track(Framing::Sse, body, &[]);
    let u = settle(Some(&t), counted_prompt);
    assert_eq!((u.prompt, u.completion), (Some(8), Some(2)));
    assert_eq!(u.source_str(), "counted");

    // the model's encoding is unknown: an estimate
    let mut t = ResponseTracker::new(Framing::Sse, None);
    t.feed(body.as_bytes());
    t.finish();
    assert_eq!(settle(Some(&t), counted_prompt).source_str(), "estimated");

    // a stream cut short (client gone): what was seen, as an estimate
    let mut t = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
    t.feed(&body.as_bytes()[..70]);
    let u = settle(Some(&t), counted_prompt);
    assert_eq!((u.completion, u.source_str()), (Some(1), "estimated"));

    // tool call arguments: an estimate
    let tools = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#;
    let t = track(Framing::Json, tools, &[]);
    let u = settle(Some(&t), counted_prompt);
    assert!(u.completion.unwrap() > 0);
    assert_eq!(u.source_str(), "estimated");
}

#[test]
fn settle_never_invents_a_zero() {
    // not JSON (an HTML error page passed through): completion unknown
    let t = track(Framing::Json, "<html>bad gateway</html>", &[]);
    let u = settle(Some(&t), || None);
    assert_eq!((u.prompt, u.completion, u.source), (None, None, None));
    assert_eq!(u.source_str(), "unknown");
    assert_eq!(u.total(), None);
    // no response body was tracked at all
    let u = settle(None, counted_prompt);
    assert_eq!((u.prompt, u.completion), (Some(8), None));
    // a JSON error from the provider: no completion text, 0 is a real count
    let t = track(
        Framing::Json,
        r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
        &[],
    );
    let u = settle(Some(&t), counted_prompt);
    assert_eq!((u.prompt, u.completion), (Some(8), Some(0)));
}

#[test]
fn long_completions_are_counted_in_slices() {
    let word = "hello ";
    let n = TEXT_MAX / word.len() * 3;
    let mut body = String::from("data: {\"choices\":[{\"delta\":{\"content\":\"");
    body.push_str(&word.repeat(n));
    body.push_str("\"}}]}\n\n");
    let t = track(Framing::Sse, &body, &[]);
    assert!(t.sink.text.len() <= TEXT_MAX);
    let u = settle(Some(&t), counted_prompt);
    let exact = Encoding::O200k.count(&word.repeat(n));
    let got = u.completion.unwrap();
    assert!(got.abs_diff(exact) <= 4, "{got} vs {exact}");
}

/// The numbers a provider (or something between it and the gateway) must not be able to
/// charge: past 2^53, i64::MAX, u64::MAX, and past u64 (held at u64::MAX by the scanner).
const IMPLAUSIBLE: [&str; 5] = [
    "10000001",
    "9007199254740993",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999999",
];

/// Every usage shape, with `{P}` (prompt) and `{C}` (completion) to fill in.
const SHAPES: [(&str, Framing, &str); 5] = [
    (
        "openai json",
        Framing::Json,
        r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":{P},"completion_tokens":{C},"total_tokens":{C}}}"#,
    ),
    (
        "openai sse",
        Framing::Sse,
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello world\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":{P},\"completion_tokens\":{C}}}\n\ndata: [DONE]\n\n",
    ),
    (
        "responses sse",
        Framing::Sse,
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello world\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":{P},\"output_tokens\":{C}}}}\n\n",
    ),
    (
        "anthropic json",
        Framing::Json,
        r#"{"id":"msg","type":"message","content":[{"type":"text","text":"Hello world"}],"usage":{"input_tokens":{P},"output_tokens":{C}}}"#,
    ),
    (
        "anthropic sse",
        Framing::Sse,
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":{P},\"output_tokens\":1}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello world\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":{C}}}\n\n",
    ),
];

#[test]
fn implausible_usage_is_replaced_by_the_gateways_count_in_every_shape() {
    for (name, framing, shape) in SHAPES {
        for bad in IMPLAUSIBLE {
            // a bad prompt: the gateway's own count of it, an estimate; the completion stays
            let body = shape.replace("{P}", bad).replace("{C}", "2");
            let u = settle(Some(&track(framing, &body, &[])), counted_prompt);
            assert_eq!(u.prompt, Some(8), "{name} prompt {bad}");
            assert_eq!(u.completion, Some(2), "{name} prompt {bad}");
            assert_eq!(u.source_str(), "estimated", "{name} prompt {bad}");
            assert_eq!(u.implausible.map(|i| i.field), Some("prompt"), "{name}");
            assert!(u.implausible.is_some_and(|i| i.value > USAGE_MAX));

            // a bad completion: the gateway counts the text it saw ("Hello world": 2)
            let body = shape.replace("{P}", "30").replace("{C}", bad);
            let u = settle(Some(&track(framing, &body, &[])), counted_prompt);
            assert_eq!(u.prompt, Some(30), "{name} completion {bad}");
            assert_eq!(u.completion, Some(2), "{name} completion {bad}");
            assert_eq!(u.source_str(), "estimated", "{name} completion {bad}");
            assert_eq!(u.implausible.map(|i| i.field), Some("completion"));
            assert!(u.total().is_some_and(|t| t <= 2 * USAGE_MAX));
        }
        // the bound itself is believed
        let max = USAGE_MAX.to_string();
        let body = shape.replace("{P}", &max).replace("{C}", &max);
        let u = settle(Some(&track(framing, &body, &[])), || panic!("no need"));
        assert_eq!((u.prompt, u.completion), (Some(USAGE_MAX), Some(USAGE_MAX)));
        assert_eq!(
            (u.source_str(), u.implausible),
            ("provider", None),
            "{name}"
        );
    }
}

#[test]
fn cache_and_reasoning_numbers_are_checked_against_their_whole() {
    // OpenAI: cached tokens are part of prompt_tokens, reasoning of completion_tokens
    let body = r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":11},"completion_tokens_details":{"reasoning_tokens":6}}}"#;
    let u = settle(Some(&track(Framing::Json, body, &[])), || None);
    assert_eq!((u.prompt, u.completion), (Some(10), Some(5)));
    assert_eq!((u.cached, u.reasoning), (None, None));
    assert_eq!(u.implausible.map(|i| i.field), Some("cached"));
    // Anthropic: a bad cache read makes the whole prompt unbelievable
    let body = r#"{"usage":{"input_tokens":10,"cache_read_input_tokens":18446744073709551615,"output_tokens":5}}"#;
    let u = settle(Some(&track(Framing::Json, body, &[])), counted_prompt);
    assert_eq!((u.prompt, u.cached), (Some(8), None));
    assert_eq!(u.source_str(), "estimated");
    assert_eq!(u.implausible.map(|i| i.field), Some("cache_read"));
    // plausible ones pass
    let body = r#"{"usage":{"input_tokens":10,"cache_read_input_tokens":40,"cache_creation_input_tokens":2,"output_tokens":5}}"#;
    let u = settle(Some(&track(Framing::Json, body, &[])), || None);
    assert_eq!(
        (u.prompt, u.cached, u.implausible),
        (Some(52), Some(40), None)
    );
}

#[test]
fn an_event_too_large_to_hold_is_read_as_it_comes() {
    let text = "long words ".repeat(3 * sse_reader::HELD_MAX / 11);
    let body = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":4}}}}\n\ndata: [DONE]\n\n"
    );
    let mut t = ResponseTracker::new(Framing::Sse, Some(Encoding::O200k));
    for piece in body.as_bytes().chunks(4096) {
        t.feed(piece);
        assert!(t.sse.held() <= sse_reader::HELD_MAX + 4096);
    }
    t.finish();
    assert_eq!(t.reported().input, Some(3));
    assert_eq!(t.reported().output, Some(4));
    assert_eq!(t.sink.text, text);
}

/// A JSON answer read whole in one piece settles exactly as the incremental scanner settles
/// it, whatever the answer: usage or none, implausible numbers, usage in nested objects,
/// duplicates, escaped keys, deep nesting, broken JSON.
#[test]
fn json_answers_read_whole_settle_as_read_in_pieces() {
    let deep = format!(
        r#"{{"choices":[{{"message":{{"content":"hi"}}}}],"x":{}1{},"usage":{{"prompt_tokens":3,"completion_tokens":2}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let edge = format!(
        r#"{{"x":{}1{},"usage":{{"prompt_tokens":3,"completion_tokens":2}}}}"#,
        "[".repeat(MAX_DEPTH_FOR_TEST - 3),
        "]".repeat(MAX_DEPTH_FOR_TEST - 3)
    );
    let answers: Vec<String> = [
        r#"{"choices":[{"message":{"content":"Hello there"}}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
        r#"{"usage":{"prompt_tokens":9,"completion_tokens":3},"choices":[{"message":{"content":"Hi"}}]}"#,
        r#"{"choices":[{"message":{"content":"no usage here"}}]}"#,
        r#"{"choices":[{"message":{"content":"null usage"}}],"usage":null}"#,
        r#"{"choices":[{"message":{"content":"prompt only"}}],"usage":{"prompt_tokens":4}}"#,
        r#"{"choices":[{"message":{"content":"too many"}}],"usage":{"prompt_tokens":4,"completion_tokens":99000000000}}"#,
        r#"{"choices":[{"message":{"content":"twice"}}],"usage":{"completion_tokens":1},"usage":{"completion_tokens":7}}"#,
        r#"{"choices":[{"message":{"content":"escaped key"}}],"us\u0061ge":{"completion_tokens":5}}"#,
        r#"{"content":[{"type":"text","text":"Anthropic"}],"usage":{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":4}}"#,
        r#"{"output":[{"content":[{"type":"output_text","text":"Responses"}]}],"usage":{"input_tokens":5,"output_tokens":1,"output_tokens_details":{"reasoning_tokens":9}}}"#,
        r#"{"message":{"usage":{"input_tokens":6,"output_tokens":2}},"choices":[{"message":{"content":"nested"}}]}"#,
        r#"{"choices":[{"message":{"content":"broken"}}],"usage":{"completion_tokens":2}"#,
        r#"{"choices":[{"message":{"content":"trailing"}}],"usage":{"completion_tokens":2}} x"#,
        r#"{"choices":[{"message":{"content":"bad literal"}}],"usage":{"completion_tokens":2},"a":tru}"#,
        r#"{"choices":[{"message":{"content":"tab	raw"}}],"usage":{"completion_tokens":2}}"#,
        r#"{"usage":{"completion_tokens":-1,"prompt_tokens":1.5}}"#,
        r#"{}"#,
        r#"[{"usage":{"completion_tokens":2}}]"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([deep, edge])
    .collect();
    for body in &answers {
        let mut whole = ResponseTracker::new(Framing::Json, Some(Encoding::O200k));
        whole.expect_len(body.len() as u64);
        whole.feed(body.as_bytes());
        whole.finish();
        // in two pieces: the incremental scanner, which reads everything
        let cut = body.len() / 2;
        let pieces = track(Framing::Json, body, &[cut]);
        let prompt = || {
            Some(PromptCount {
                tokens: 11,
                source: Source::Counted,
                encoding: Encoding::O200k,
            })
        };
        assert_eq!(
            settle(Some(&whole), prompt),
            settle(Some(&pieces), prompt),
            "{body}"
        );
    }
}

const MAX_DEPTH_FOR_TEST: usize = super::scan::MAX_DEPTH;
