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

use serde::Deserialize;
use serde_json::Value;

use crate::core::tokens::Encoding;
use crate::core::usage::stream_usage::event_end;

/// Text kept uncounted at most (it is counted then).
const UNCOUNTED_MAX: usize = 64 * 1024;

/// Largest event held back while incomplete; past it the cap stops (everything passes).
const EVENT_MAX: usize = 1 << 20;

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
    /// Text sent but not counted yet: a token is at least one byte, so while the counted
    /// tokens plus these bytes stay within the cap there is no need to count.
    uncounted: String,
    ended: bool,
    off: bool,
    id: Option<String>,
    model: Option<String>,
    created: Option<u64>,
    /// OpenAI choice indexes seen.
    choices: Vec<u64>,
    /// Anthropic: the content block started and not yet stopped.
    open_block: Option<u64>,
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
            uncounted: String::new(),
            ended: false,
            off: false,
            id: None,
            model: None,
            created: None,
            choices: Vec::new(),
            open_block: None,
        }
    }

    /// Whether the stream was ended at the cap (everything fed since is dropped).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Completion tokens of what was sent.
    pub fn tokens_sent(&self) -> u64 {
        self.tokens + self.enc.count(&self.uncounted)
    }

    /// The next piece of the stream; what the client gets goes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        if self.off {
            out.extend_from_slice(data);
            return;
        }
        self.pending.extend_from_slice(data);
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
            self.off = true;
            out.append(&mut self.pending);
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
        let mut data = Vec::new();
        for line in ev.split(|b| *b == b'\n' || *b == b'\r') {
            if let Some(rest) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            }
        }
        let mut text = String::new();
        let parsed = match self.api {
            StreamApi::OpenAiChat => self.openai(&data, &mut text),
            StreamApi::Anthropic => self.anthropic(&data, &mut text),
        };
        if !parsed {
            return true; // [DONE], comments, pings
        }
        if text.is_empty() {
            return true;
        }
        let bound = self.tokens + (self.uncounted.len() + text.len()) as u64;
        if bound <= self.cap {
            if self.uncounted.len() + text.len() > UNCOUNTED_MAX {
                self.tokens += self.enc.count(&self.uncounted);
                self.uncounted.clear();
            }
            self.uncounted.push_str(&text);
            return true;
        }
        self.tokens += self.enc.count(&self.uncounted);
        self.uncounted.clear();
        let n = self.enc.count(&text);
        if self.tokens + n > self.cap {
            return false;
        }
        self.tokens += n;
        true
    }

    fn openai(&mut self, data: &[u8], text: &mut String) -> bool {
        let Ok(chunk) = serde_json::from_slice::<ChatChunk>(data) else {
            return false;
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
            let Some(d) = c.delta else { continue };
            for piece in [d.content, d.reasoning_content, d.reasoning, d.refusal]
                .into_iter()
                .flatten()
            {
                text.push_str(&piece);
            }
            for call in d.tool_calls.unwrap_or_default() {
                if let Some(args) = call.function.and_then(|f| f.arguments) {
                    text.push_str(&args);
                }
            }
        }
        true
    }

    fn anthropic(&mut self, data: &[u8], text: &mut String) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return false;
        };
        match v["type"].as_str() {
            Some("message_start") => {
                self.id = v["message"]["id"].as_str().map(str::to_string);
                self.model = v["message"]["model"].as_str().map(str::to_string);
            }
            Some("content_block_start") => self.open_block = v["index"].as_u64(),
            Some("content_block_stop") => self.open_block = None,
            Some("content_block_delta") => {
                let d = &v["delta"];
                for key in ["text", "thinking", "partial_json"] {
                    if let Some(s) = d[key].as_str() {
                        text.push_str(s);
                    }
                }
            }
            _ => {}
        }
        true
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
    #[serde(borrow, default)]
    choices: Option<Vec<ChatChoice<'a>>>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
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
