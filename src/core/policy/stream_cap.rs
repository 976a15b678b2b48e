//! Ends a streamed answer cleanly at a namespace's output cap (`output_tokens`), for
//! providers that stream past the `max_tokens` they were given (or were not given one).
//!
//! The stream is read event by event. The completion text of each event (content, reasoning,
//! refusal and tool-call arguments for OpenAI Chat; text, thinking and tool input for
//! Anthropic Messages) is counted with the model's encoding; the event that would take the
//! count past the cap is not sent, and neither is anything after it. In its place the client
//! gets the ending the API defines for a length stop:
//!
//! - OpenAI Chat Completions: a chunk with `"finish_reason":"length"` for every choice seen,
//!   then `data: [DONE]`;
//! - Anthropic Messages: `content_block_stop` for an open block, `message_delta` with
//!   `"stop_reason":"max_tokens"` and the output tokens sent, and `message_stop`.
//!
//! A token is at least one byte, so text is only counted once its bytes could pass the cap;
//! then pieces are counted separately, which can only be a little above the exact count of
//! the whole text: the cut errs on the early side. Events below the cap pass byte for byte.

use std::borrow::Cow;

use memchr::memmem;
use serde::Deserialize;
use serde_json::Value;

use crate::core::tokens::Encoding;
use crate::core::usage::stream_usage::event_end;

/// Text kept uncounted at most (it is counted then).
const UNCOUNTED_MAX: usize = 64 * 1024;

/// Largest event held back while incomplete. An event past it cannot be counted before it
/// would go out, so the stream ends there as at the cap (memory stays bounded, the cap
/// holds whatever the event's size).
pub const EVENT_MAX: usize = 1 << 20;

/// The streaming API, from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamApi {
    OpenAiChat,
    Anthropic,
}

impl StreamApi {
    /// The API whose streams can be capped, by request path.
    pub fn of_path(path: &[u8]) -> Option<StreamApi> {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.ends_with(b"/chat/completions") {
            Some(StreamApi::OpenAiChat)
        } else if path.ends_with(b"/messages") {
            Some(StreamApi::Anthropic)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub struct StreamCap {
    cap: u64,
    api: StreamApi,
    enc: Encoding,
    pending: Vec<u8>,
    scanned: usize,
    /// Completion tokens of the text sent, counted.
    tokens: u64,
    /// Text sent but not counted yet, as the raw (still escaped) contents of its JSON strings:
    /// a token is at least one byte and an escape is longer than what it stands for, so while
    /// the counted tokens plus these bytes stay within the cap there is no need to count.
    uncounted: Vec<u8>,
    ended: bool,
    /// The stream was ended at an event larger than [`EVENT_MAX`].
    oversized: bool,
    id: Option<String>,
    model: Option<String>,
    created: Option<u64>,
    /// OpenAI choice indexes seen.
    choices: Vec<u64>,
    /// Anthropic: the content block started and not yet stopped.
    open_block: Option<u64>,
    /// Searchers for the keys whose string values are completion text.
    text_keys: Vec<memmem::Finder<'static>>,
}

impl StreamCap {
    pub fn new(cap: u64, api: StreamApi, enc: Encoding) -> StreamCap {
        StreamCap {
            cap,
            api,
            enc,
            pending: Vec::new(),
            scanned: 0,
            tokens: 0,
            uncounted: Vec::new(),
            ended: false,
            oversized: false,
            id: None,
            model: None,
            created: None,
            choices: Vec::new(),
            open_block: None,
            text_keys: match api {
                StreamApi::OpenAiChat => &OPENAI_TEXT_KEYS[..],
                StreamApi::Anthropic => &ANTHROPIC_TEXT_KEYS[..],
            }
            .iter()
            .map(|k| memmem::Finder::new(*k))
            .collect(),
        }
    }

    /// Whether the stream was ended at the cap (everything fed since is dropped).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the stream was ended at an event too large to hold ([`EVENT_MAX`]).
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// Completion tokens of what was sent.
    pub fn tokens_sent(&self) -> u64 {
        self.tokens + count_raw(self.enc, &self.uncounted)
    }

    /// The next piece of the stream; what the client gets goes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        if self.pending.is_empty() {
            // the usual case: whole events in the buffer, taken from it without a copy
            let mut start = 0;
            while let Ok(end) = event_end(data, start) {
                if !self.pass(&data[start..end]) {
                    self.end(out);
                    return;
                }
                out.extend_from_slice(&data[start..end]);
                start = end;
            }
            self.pending.extend_from_slice(&data[start..]);
            self.scanned = 0;
        } else {
            self.pending.extend_from_slice(data);
        }
        let mut start = 0;
        loop {
            match event_end(&self.pending, self.scanned.max(start)) {
                Ok(end) => {
                    let ev = std::mem::take(&mut self.pending);
                    let passes = self.pass(&ev[start..end]);
                    self.pending = ev;
                    if !passes {
                        self.end(out);
                        self.pending.clear();
                        self.scanned = 0;
                        return;
                    }
                    out.extend_from_slice(&self.pending[start..end]);
                    start = end;
                    self.scanned = end;
                }
                Err(line) => {
                    self.scanned = line;
                    break;
                }
            }
        }
        self.pending.drain(..start);
        self.scanned -= start;
        if self.pending.len() > EVENT_MAX {
            self.oversized = true;
            self.end(out);
            self.pending = Vec::new();
            self.scanned = 0;
        }
    }

    /// The stream ended: an unfinished event is passed on as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            out.append(&mut self.pending);
        }
        self.scanned = 0;
    }

    /// Whether an event may go out (counting its completion text).
    fn pass(&mut self, ev: &[u8]) -> bool {
        let data = event_data(ev);
        if data.first() != Some(&b'{') {
            return true; // [DONE], comments, pings
        }
        // the few events that carry state are parsed; text is read without a parse
        match self.api {
            StreamApi::OpenAiChat => {
                if self.id.is_none() || has_nonzero_index(&data) {
                    self.openai_state(&data);
                }
            }
            StreamApi::Anthropic => {
                if memmem::find(&data, b"\"content_block_delta\"").is_none() {
                    self.anthropic_state(&data);
                }
            }
        }
        let mut raw = Vec::new();
        for key in &self.text_keys {
            string_values(&data, key, &mut raw);
        }
        if raw.is_empty() {
            return true;
        }
        // raw JSON string bytes >= text bytes >= tokens
        let bound = self.tokens + (self.uncounted.len() + raw.len()) as u64;
        if bound <= self.cap {
            if self.uncounted.len() + raw.len() > UNCOUNTED_MAX {
                self.count_uncounted();
            }
            self.uncounted.extend_from_slice(&raw);
            return true;
        }
        self.count_uncounted();
        let n = count_raw(self.enc, &raw);
        if self.tokens + n > self.cap {
            return false;
        }
        self.tokens += n;
        true
    }

    fn count_uncounted(&mut self) {
        self.tokens += count_raw(self.enc, &self.uncounted);
        self.uncounted.clear();
    }

    /// Id, model, creation time and choice indexes (for the ending chunks).
    fn openai_state(&mut self, data: &[u8]) {
        let Ok(chunk) = serde_json::from_slice::<ChatChunk>(data) else {
            return;
        };
        if self.id.is_none() {
            self.id = chunk.id.map(Cow::into_owned);
            self.model = chunk.model.map(Cow::into_owned);
            self.created = chunk.created;
        }
        for c in chunk.choices.unwrap_or_default() {
            let i = c.index.unwrap_or(0);
            if !self.choices.contains(&i) && self.choices.len() < 128 {
                self.choices.push(i);
            }
        }
    }

    /// The open content block (Anthropic).
    fn anthropic_state(&mut self, data: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str() {
            Some("message_start") => {
                self.id = v["message"]["id"].as_str().map(str::to_string);
                self.model = v["message"]["model"].as_str().map(str::to_string);
            }
            Some("content_block_start") => self.open_block = v["index"].as_u64(),
            Some("content_block_stop") => self.open_block = None,
            _ => {}
        }
    }

    /// The API's own ending for a stream stopped at its length limit.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.ended = true;
        match self.api {
            StreamApi::OpenAiChat => {
                if self.choices.is_empty() {
                    self.choices.push(0);
                }
                let id = Value::from(self.id.as_deref().unwrap_or("")).to_string();
                let model = Value::from(self.model.as_deref().unwrap_or("")).to_string();
                for i in &self.choices {
                    // OpenAI's own field order
                    out.extend_from_slice(
                        format!(
                            "data: {{\"id\":{id},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{model},\"choices\":[{{\"index\":{i},\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"length\"}}]}}\n\n",
                            self.created.unwrap_or(0)
                        )
                        .as_bytes(),
                    );
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            StreamApi::Anthropic => {
                if let Some(i) = self.open_block.take() {
                    out.extend_from_slice(
                        format!(
                            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{i}}}\n\n"
                        )
                        .as_bytes(),
                    );
                }
                out.extend_from_slice(
                    format!(
                        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
                        self.tokens_sent()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(
                    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                );
            }
        }
    }
}

/// The parts of an OpenAI chat chunk the cap reads (strings borrowed unless escaped).
#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Option<Vec<ChatChoice>>,
}

#[derive(Deserialize)]
struct ChatChoice {
    #[serde(default)]
    index: Option<u64>,
}

/// Keys whose string values are completion text.
const OPENAI_TEXT_KEYS: [&[u8]; 5] = [
    b"\"content\"",
    b"\"reasoning_content\"",
    b"\"reasoning\"",
    b"\"refusal\"",
    b"\"arguments\"",
];
const ANTHROPIC_TEXT_KEYS: [&[u8]; 3] = [b"\"text\"", b"\"thinking\"", b"\"partial_json\""];

/// The data of an event: its `data:` lines joined (borrowed when there is one).
fn event_data(ev: &[u8]) -> Cow<'_, [u8]> {
    // the usual event: one data line
    if let Some(rest) = ev.strip_prefix(b"data:") {
        let line = match memchr::memchr(b'\n', rest) {
            Some(nl) if rest[nl + 1..].iter().all(|b| *b == b'\n' || *b == b'\r') => &rest[..nl],
            _ => b"",
        };
        if !line.is_empty() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Cow::Borrowed(line.strip_prefix(b" ").unwrap_or(line));
        }
    }
    let mut lines = ev
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|l| l.strip_prefix(b" ").unwrap_or(l));
    let Some(first) = lines.next() else {
        return Cow::Borrowed(&[]);
    };
    match lines.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut joined = first.to_vec();
            for l in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(l);
            }
            Cow::Owned(joined)
        }
    }
}

/// Appends the raw contents of every string value of `key` (a quoted name) in `json`. A
/// quoted name can only be a key: inside a string its quotes would be escaped.
fn string_values(json: &[u8], key: &memmem::Finder<'_>, out: &mut Vec<u8>) {
    for at in key.find_iter(json) {
        let mut i = at + key.needle().len();
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if json.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if json.get(i) != Some(&b'"') {
            continue; // null, an array (logprobs.content), ...
        }
        let start = i + 1;
        let mut j = start;
        while let Some(k) = memchr::memchr2(b'"', b'\\', &json[j..]) {
            if json[j + k] == b'\\' {
                j += k + 2;
                continue;
            }
            out.extend_from_slice(&json[start..j + k]);
            break;
        }
    }
}

/// Whether a chunk names a choice index other than 0 (then it is parsed for its choices).
fn has_nonzero_index(json: &[u8]) -> bool {
    memmem::find_iter(json, b"\"index\":").any(|at| {
        json.get(at + 8)
            .is_some_and(|c| c.is_ascii_digit() && *c != b'0')
    })
}

/// Tokens of raw JSON string contents.
fn count_raw(enc: Encoding, raw: &[u8]) -> u64 {
    if raw.is_empty() {
        return 0;
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    match serde_json::from_slice::<Cow<'_, str>>(&quoted) {
        Ok(text) => enc.count(&text),
        // not valid JSON string contents: bytes are an upper bound
        Err(_) => raw.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(content).unwrap()
        )
    }

    fn run(cap: u64, api: StreamApi, stream: &str, cut: usize) -> (String, StreamCap) {
        let mut c = StreamCap::new(cap, api, Encoding::O200k);
        let mut out = Vec::new();
        let bytes = stream.as_bytes();
        for piece in bytes.chunks(cut.max(1)) {
            c.feed(piece, &mut out);
        }
        c.finish(&mut out);
        (String::from_utf8(out).unwrap(), c)
    }

    #[test]
    fn openai_stream_below_the_cap_passes_unchanged() {
        let s = format!("{}{}data: [DONE]\n\n", chunk("Hello"), chunk(" world"));
        for cut in [1, 3, 7, 1000] {
            let (out, c) = run(10, StreamApi::OpenAiChat, &s, cut);
            assert_eq!(out, s);
            assert!(!c.ended());
            assert_eq!(c.tokens_sent(), 2);
        }
    }

    #[test]
    fn openai_stream_past_the_cap_ends_with_length_and_done() {
        let words = ["One", " two", " three", " four", " five", " six"];
        let mut s: String = words.iter().map(|w| chunk(w)).collect();
        s.push_str("data: [DONE]\n\n");
        for cut in [1, 5, 64, 10_000] {
            let (out, c) = run(3, StreamApi::OpenAiChat, &s, cut);
            let expected = format!(
                "{}{}{}data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"length\"}}]}}\n\ndata: [DONE]\n\n",
                chunk("One"),
                chunk(" two"),
                chunk(" three")
            );
            assert_eq!(out, expected, "cut {cut}");
            assert!(c.ended());
            assert_eq!(c.tokens_sent(), 3);
        }
    }

    #[test]
    fn an_event_larger_than_held_ends_the_stream_whatever_the_cap() {
        let big = chunk(&"x".repeat(2 * EVENT_MAX));
        let s = format!("{}{big}data: [DONE]\n\n", chunk("Hi"));
        // split into pieces (as nginx hands it over): too large to hold and count
        for cut in [4096, 65536] {
            let (out, c) = run(u64::MAX, StreamApi::OpenAiChat, &s, cut);
            assert!(c.ended() && c.oversized(), "cut {cut}");
            assert!(out.starts_with(&chunk("Hi")));
            assert!(out.ends_with("\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n"));
            assert!(out.len() < 2048, "nothing of the big event went out");
            assert_eq!(c.pending.capacity(), 0, "its memory is given back");
        }
        // whole in one piece it is counted like any event: past a cap it is cut
        let (out, c) = run(100, StreamApi::OpenAiChat, &s, s.len());
        assert!(c.ended() && !c.oversized());
        assert!(out.len() < 2048);
        // one just below what is held passes whole
        let below = chunk(&"y".repeat(EVENT_MAX - 1000));
        let (out, c) = run(u64::MAX, StreamApi::OpenAiChat, &below, 4096);
        assert!(!c.ended());
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
        let (out, c) = run(3, StreamApi::Anthropic, s, 9);
        assert!(c.ended());
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
        let mut out = Vec::new();
        let json = br#"{"choices":[{"index":0,"delta":{"content":"a \"content\":\"x\" \u00e9"},"logprobs":{"content":[{"token":"a"}]}}]}"#;
        let key = |k: &'static [u8]| memmem::Finder::new(k);
        string_values(json, &key(b"\"content\""), &mut out);
        assert_eq!(out, br#"a \"content\":\"x\" \u00e9"#);
        assert_eq!(
            count_raw(Encoding::O200k, &out),
            Encoding::O200k.count("a \"content\":\"x\" é")
        );
        out.clear();
        string_values(
            br#"{"delta":{"content" : "spaced","refusal":null}}"#,
            &key(b"\"content\""),
            &mut out,
        );
        string_values(
            br#"{"delta":{"content" : "spaced","refusal":null}}"#,
            &key(b"\"refusal\""),
            &mut out,
        );
        assert_eq!(out, b"spaced");
        assert!(has_nonzero_index(br#"{"choices":[{"index":1}]}"#));
        assert!(!has_nonzero_index(br#"{"choices":[{"index":0}]}"#));
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
        let (out, c) = run(6, StreamApi::OpenAiChat, &s, 17);
        assert!(c.ended());
        assert!(out
            .starts_with(&[ev(0, r#"{"content":"one"}"#), ev(1, r#"{"content":"two"}"#)].concat()));
        assert!(out.contains(
            r#""choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]"#
        ));
        assert!(out.contains(
            r#""choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"length"}]"#
        ));
        assert!(out.ends_with("data: [DONE]\n\n"));
        // one, two and the tool call arguments ({"a":1}: 5 tokens) were sent: 7 > 6, so the
        // arguments were the event refused
        assert_eq!(c.tokens_sent(), 2);
    }

    #[test]
    fn apis_by_path() {
        assert_eq!(
            StreamApi::of_path(b"/v1/chat/completions"),
            Some(StreamApi::OpenAiChat)
        );
        assert_eq!(
            StreamApi::of_path(b"/v1/messages/"),
            Some(StreamApi::Anthropic)
        );
        assert_eq!(StreamApi::of_path(b"/v1/responses"), None);
    }
}
