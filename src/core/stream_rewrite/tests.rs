use super::*;
use crate::core::policy::stream_cap::StreamApi;
use crate::core::tokens::Encoding;
use crate::core::usage::Framing;

fn tracker() -> ResponseTracker {
    ResponseTracker::new(Framing::Sse, Some(Encoding::O200k))
}

/// Runs `stream` through a rewriter in pieces cut at `cuts`; the client's bytes, the
/// rewriter and its tracker.
pub(super) fn rewrite_at(
    strip: bool,
    cap: Option<StreamCap>,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, StreamRewriter, ResponseTracker) {
    let mut t = tracker();
    let mut w = StreamRewriter::new(strip, cap, &mut t);
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        w.feed(&stream[start..c], &mut t, &mut out);
        start = c;
    }
    w.feed(&stream[start..], &mut t, &mut out);
    w.finish(&mut t, &mut out);
    (out, w, t)
}

fn strip(stream: &str, cuts: &[usize]) -> String {
    let (out, _, _) = rewrite_at(true, None, stream.as_bytes(), cuts);
    String::from_utf8(out).unwrap()
}

pub(super) fn run(cap: u64, api: StreamApi, stream: &str, cut: usize) -> (String, StreamRewriter) {
    let cuts: Vec<usize> = (1..stream.len().div_ceil(cut.max(1)))
        .map(|i| i * cut.max(1))
        .collect();
    let c = StreamCap::new(cap, api, Encoding::O200k);
    let (out, w, _) = rewrite_at(false, Some(c), stream.as_bytes(), &cuts);
    (String::from_utf8(out).unwrap(), w)
}

pub(super) fn capped(w: &StreamRewriter) -> &StreamCap {
    w.cap().unwrap()
}

const WITH_USAGE: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
    "data: [DONE]\n\n",
);
const WITHOUT_USAGE: &str = concat!(
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn gives_back_the_stream_the_client_asked_for() {
    assert_eq!(strip(WITH_USAGE, &[]), WITHOUT_USAGE);
    for cut in 0..=WITH_USAGE.len() {
        assert_eq!(strip(WITH_USAGE, &[cut]), WITHOUT_USAGE, "cut at {cut}");
    }
    let all: Vec<usize> = (1..WITH_USAGE.len()).collect();
    assert_eq!(strip(WITH_USAGE, &all), WITHOUT_USAGE);
}

#[test]
fn the_tracker_reads_the_usage_the_client_does_not_get() {
    for cut in 0..=WITH_USAGE.len() {
        let (_, w, t) = rewrite_at(true, None, WITH_USAGE.as_bytes(), &[cut]);
        assert_eq!(t.reported().input, Some(5), "cut {cut}");
        assert_eq!(t.reported().output, Some(1), "cut {cut}");
        assert_eq!(w.stripper().unwrap().dropped_events(), 1);
        assert!(t.is_complete());
    }
}

#[test]
fn complete_events_go_out_at_once() {
    let mut t = tracker();
    let mut w = StreamRewriter::new(true, None, &mut t);
    let mut out = Vec::new();
    let first_end = WITH_USAGE.find("\n\n").unwrap() + 2;
    w.feed(&WITH_USAGE.as_bytes()[..first_end + 10], &mut t, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        WITHOUT_USAGE[..WITHOUT_USAGE.find("\n\n").unwrap() + 2]
    );
}

#[test]
fn other_line_ends_and_layouts() {
    let crlf = WITH_USAGE.replace('\n', "\r\n");
    assert_eq!(strip(&crlf, &[]), WITHOUT_USAGE.replace('\n', "\r\n"));
    for cut in 0..=crlf.len() {
        assert_eq!(
            strip(&crlf, &[cut]),
            WITHOUT_USAGE.replace('\n', "\r\n"),
            "cut {cut}"
        );
    }
    // CR alone
    let cr = WITH_USAGE.replace('\n', "\r");
    assert_eq!(strip(&cr, &[]), WITHOUT_USAGE.replace('\n', "\r"));
    // usage first, spaces around the colon and comma
    let ev = "data: {\"usage\" : null , \"id\":\"c\"}\n\n";
    assert_eq!(strip(ev, &[]), "data: {\"id\":\"c\"}\n\n");
    // the only member
    assert_eq!(strip("data: {\"usage\":null}\n\n", &[]), "data: {}\n\n");
    // nested usage keys are not top-level members
    let nested = "data: {\"a\":{\"usage\":null},\"b\":\"\\\"usage\\\"\"}\n\n";
    assert_eq!(strip(nested, &[]), nested);
    // comments, event names, [DONE] and non-JSON pass through
    let other = ": ping\n\nevent: x\ndata: hello\n\ndata: [DONE]\n\n";
    assert_eq!(strip(other, &[]), other);
    // a final chunk with choices and usage (some providers): kept
    let both = "data: {\"choices\":[{\"index\":0}],\"usage\":{\"total_tokens\":1}}\n\n";
    assert_eq!(strip(both, &[]), both);
    // an event whose data is two lines: left alone
    let two = "data: {\"choices\":[],\ndata: \"usage\":{\"total_tokens\":1}}\n\n";
    assert_eq!(strip(two, &[]), two);
    // not JSON after all (an unterminated object): left alone
    let broken = "data: {\"choices\":[],\"usage\":{\"total_tokens\":1}\n\n";
    assert_eq!(strip(broken, &[]), broken);
}

#[test]
fn an_unfinished_event_is_passed_on_at_the_end() {
    let partial = "data: {\"id\":\"c\",\"usage\":null}";
    assert_eq!(strip(partial, &[]), partial);
    assert_eq!(strip(partial, &[7]), partial);
}

#[test]
fn an_oversized_event_turns_stripping_off() {
    let big = format!("data: {{\"x\":\"{}\"", "a".repeat(EVENT_MAX + 10));
    let mut t = tracker();
    let mut w = StreamRewriter::new(true, None, &mut t);
    let mut out = Vec::new();
    w.feed(big.as_bytes(), &mut t, &mut out);
    assert_eq!(out.len(), big.len());
    w.feed(b",\"usage\":null}\n\n", &mut t, &mut out);
    assert!(out.ends_with(b",\"usage\":null}\n\n"));
    // the tracker read it all, as one event
    w.feed(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n",
        &mut t,
        &mut out,
    );
    assert_eq!(t.reported().input, Some(3));
}

/// Every split of a stream gives the tracker the same reading through a rewriter as fed
/// directly.
#[test]
fn the_tracker_reads_the_same_through_the_rewriter() {
    let s = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"H\\u00e9llo\"}}],\"usage\":null}\r\n\r\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n",
        "data: [DONE]\n\n",
    );
    let mut direct = tracker();
    direct.feed(s.as_bytes());
    direct.finish();
    for cut in 0..=s.len() {
        for strip_on in [false, true] {
            let cap = StreamCap::new(1000, StreamApi::OpenAiChat, Encoding::O200k);
            let (_, _, t) = rewrite_at(strip_on, Some(cap), s.as_bytes(), &[cut]);
            assert_eq!(t.reported(), direct.reported(), "cut {cut}");
            let usage = crate::core::usage::settle(Some(&t), || None);
            let direct_usage = crate::core::usage::settle(Some(&direct), || None);
            assert_eq!(usage, direct_usage, "cut {cut}");
        }
    }
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(content).unwrap()
    )
}

#[test]
fn openai_stream_below_the_cap_passes_unchanged() {
    let s = format!("{}{}data: [DONE]\n\n", chunk("Hello"), chunk(" world"));
    for cut in [1, 3, 7, 1000] {
        let (out, w) = run(10, StreamApi::OpenAiChat, &s, cut);
        assert_eq!(out, s);
        assert!(!w.ended());
        assert_eq!(capped(&w).tokens_sent(), 2);
    }
}

#[test]
fn openai_stream_past_the_cap_ends_with_length_and_done() {
    let words = ["One", " two", " three", " four", " five", " six"];
    let mut s: String = words.iter().map(|w| chunk(w)).collect();
    s.push_str("data: [DONE]\n\n");
    for cut in [1, 5, 64, 10_000] {
        let (out, w) = run(3, StreamApi::OpenAiChat, &s, cut);
        let expected = format!(
            "{}{}{}data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"length\"}}]}}\n\ndata: [DONE]\n\n",
            chunk("One"),
            chunk(" two"),
            chunk(" three")
        );
        assert_eq!(out, expected, "cut {cut}");
        assert!(w.ended());
        assert_eq!(capped(&w).tokens_sent(), 3);
    }
}

#[test]
fn after_the_cap_the_tracker_still_reads_the_provider() {
    let mut s: String = ["One", " two", " three", " four"]
        .iter()
        .map(|w| chunk(w))
        .collect();
    s.push_str("data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":4,\"total_tokens\":8}}\n\ndata: [DONE]\n\n");
    for cut in [1, 9, 100, 10_000] {
        let cuts: Vec<usize> = (1..s.len().div_ceil(cut)).map(|i| i * cut).collect();
        let c = StreamCap::new(2, StreamApi::OpenAiChat, Encoding::O200k);
        let (out, w, t) = rewrite_at(true, Some(c), s.as_bytes(), &cuts);
        assert!(w.ended());
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
        assert_eq!(t.reported().output, Some(4), "cut {cut}");
    }
}

#[test]
fn an_event_larger_than_held_ends_the_stream_whatever_the_cap() {
    let big = chunk(&"x".repeat(2 * EVENT_MAX));
    let s = format!("{}{big}data: [DONE]\n\n", chunk("Hi"));
    // split into pieces (as nginx hands it over): too large to hold and count
    for cut in [4096, 65536] {
        let (out, w) = run(u64::MAX, StreamApi::OpenAiChat, &s, cut);
        assert!(w.ended() && capped(&w).oversized(), "cut {cut}");
        assert!(out.starts_with(&chunk("Hi")));
        assert!(out.ends_with("\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n"));
        assert!(out.len() < 2048, "nothing of the big event went out");
        assert_eq!(w.pending.capacity(), 0, "its memory is given back");
    }
    // whole in one piece it is counted like any event: past a cap it is cut
    let (out, w) = run(100, StreamApi::OpenAiChat, &s, s.len());
    assert!(w.ended() && !capped(&w).oversized());
    assert!(out.len() < 2048);
    // one just below what is held passes whole
    let below = chunk(&"y".repeat(EVENT_MAX - 1000));
    let (out, w) = run(u64::MAX, StreamApi::OpenAiChat, &below, 4096);
    assert!(!w.ended());
    assert_eq!(out, below);
}

#[test]
fn anthropic_stream_past_the_cap_stops_with_max_tokens() {
    let s = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"One two\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" three four\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
    let (out, w) = run(3, StreamApi::Anthropic, s, 9);
    assert!(w.ended());
    let head = s.split("event: content_block_delta").next().unwrap();
    assert_eq!(
        out,
        format!(
            "{head}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"One two\"}}}}\n\n\
             event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":2}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        )
    );
    // under the cap: byte for byte
    let (out, _) = run(100, StreamApi::Anthropic, s, 9);
    assert_eq!(out, s);
}

#[test]
fn text_is_read_from_string_values_of_text_keys_only() {
    // the key inside a string and logprobs' content array are not text; escapes count as
    // the characters they stand for
    let ev = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \\\"content\\\":\\\"x\\\" \\u00e9\",\"refusal\":null},\"logprobs\":{\"content\":[{\"token\":\"a\"}]}}]}\n\n";
    let mut t = tracker();
    let c = StreamCap::new(1000, StreamApi::OpenAiChat, Encoding::O200k);
    let mut w = StreamRewriter::new(false, Some(c), &mut t);
    let mut out = Vec::new();
    w.feed(ev.as_bytes(), &mut t, &mut out);
    assert_eq!(t.facts().text, "a \"content\":\"x\" é");
    assert_eq!(
        capped(&w).tokens_sent(),
        Encoding::O200k.count("a \"content\":\"x\" é")
    );
    assert_eq!(out, ev.as_bytes());
}

#[test]
fn several_choices_and_tool_calls() {
    let ev = |i: u32, delta: &str| {
        format!(
            "data: {{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":9,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":{i},\"delta\":{delta},\"finish_reason\":null}}]}}\r\n\r\n"
        )
    };
    let s = [
        ev(0, r#"{"content":"one"}"#),
        ev(1, r#"{"content":"two"}"#),
        ev(
            0,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}"#,
        ),
        ev(1, r#"{"content":" three four five six seven"}"#),
    ]
    .concat();
    let (out, w) = run(6, StreamApi::OpenAiChat, &s, 17);
    assert!(w.ended());
    assert!(
        out.starts_with(&[ev(0, r#"{"content":"one"}"#), ev(1, r#"{"content":"two"}"#)].concat())
    );
    assert!(out.contains(
        r#""id":"c2","object":"chat.completion.chunk","created":9,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]"#
    ));
    assert!(out.contains(
        r#""choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"length"}]"#
    ));
    assert!(out.ends_with("data: [DONE]\n\n"));
    // one, two and the tool call arguments ({"a":1}: 5 tokens) were sent: 7 > 6, so the
    // arguments were the event refused
    assert_eq!(capped(&w).tokens_sent(), 2);
}

#[test]
fn strip_and_cap_together() {
    let mut s = String::new();
    for w in ["One", " two", " three", " four"] {
        let c = chunk(w);
        s.push_str(&c.replace(
            "\"finish_reason\":null}]}",
            "\"finish_reason\":null}],\"usage\":null}",
        ));
    }
    s.push_str(WITH_USAGE.lines().nth(4).unwrap());
    s.push_str("\n\ndata: [DONE]\n\n");
    let c = StreamCap::new(100, StreamApi::OpenAiChat, Encoding::O200k);
    let (out, _, t) = rewrite_at(true, Some(c), s.as_bytes(), &[]);
    let expected: String = ["One", " two", " three", " four"]
        .iter()
        .map(|w| chunk(w))
        .collect::<String>()
        + "data: [DONE]\n\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(t.reported().input, Some(5));
}

/// Events that repeat the layout of the one before are read from the memo of that layout:
/// the tracker and the cap read the same as from a scan of every event, whatever the cuts.
#[test]
fn repeated_layouts_read_the_same_as_a_full_scan() {
    let delta = |i: u32, d: &str| {
        format!(
            "data: {{\"id\":\"c3\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":{i},\"delta\":{d},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let s = [
        delta(0, r#"{"role":"assistant","content":""}"#),
        delta(0, r#"{"content":"Hello"}"#),
        delta(0, r#"{"content":" wor\"ld"}"#),
        delta(0, r#"{"content":" \u00e9\ud83d\ude00"}"#),
        delta(0, r#"{"content":""}"#),
        delta(
            0,
            r#"{"content":"  again, a longer piece of text than before"}"#,
        ),
        delta(1, r#"{"content":"other choice"}"#),
        delta(0, r#"{"content":"back"}"#),
        delta(
            0,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}"#,
        ),
        delta(
            0,
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}"#,
        ),
        delta(0, r#"{"content":"x\u12"}"#),
        delta(0, r#"{"content":"end"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let mut direct = tracker();
    direct.feed(s.as_bytes());
    direct.finish();
    let direct_usage = crate::core::usage::settle(Some(&direct), || None);
    assert!(direct_usage.completion.is_some());
    let mut sent = None;
    for cut in (0..=s.len()).step_by(7) {
        let c = StreamCap::new(1_000, StreamApi::OpenAiChat, Encoding::O200k);
        let (out, w, t) = rewrite_at(false, Some(c), s.as_bytes(), &[cut]);
        assert_eq!(String::from_utf8(out).unwrap(), s, "cut {cut}");
        let usage = crate::core::usage::settle(Some(&t), || None);
        assert_eq!(usage, direct_usage, "cut {cut}");
        let tokens = capped(&w).tokens_sent();
        assert_eq!(*sent.get_or_insert(tokens), tokens, "cut {cut}");
    }
}
