//! Token usage of a response, read as the response streams by: the usage the provider reports
//! (OpenAI chat completions and Responses, Anthropic Messages; JSON or server-sent events) and
//! the completion text, kept so that the gateway can count it when the provider reports
//! nothing.
//!
//! The tracker sees every byte once, in the pieces nginx hands to the body filter, keeps no
//! copy of the response (only the completion text, bounded by [`TEXT_MAX`]) and never changes
//! what the client receives.

mod event;
mod event_memo;
mod scan;
mod scan_whole;
mod sse;
mod sse_reader;
pub(crate) mod stream_usage;

pub use event::{
    EventFacts, EventType, FactsWanted, ResponsesEvent, ResponsesFacts, StreamApi, TextKind,
};
pub use scan::{Kind, Name, Scanner, Visitor};
use scan_whole::{scan_whole, Whole};
pub use sse::SseLines;
use sse_reader::SseReader;
pub use stream_usage::{request_usage, request_usage_at, Rewrite, UsageStripper};

use crate::core::tokens::{Encoding, PromptCount, Source};

/// Completion text kept for counting; past it the text is counted in slices as it comes.
pub const TEXT_MAX: usize = 256 * 1024;

/// Room made for completion text at first.
const TEXT_START: usize = 512;

/// What a provider reported, field by field (the last value seen wins: Anthropic's
/// `message_delta` carries the running output count).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// `prompt_tokens` (OpenAI chat) or `input_tokens` (Responses, Anthropic).
    pub input: Option<u64>,
    /// `completion_tokens` or `output_tokens`.
    pub output: Option<u64>,
    pub total: Option<u64>,
    /// `prompt_tokens_details.cached_tokens` / `input_tokens_details.cached_tokens` (OpenAI:
    /// part of `input`).
    pub cached: Option<u64>,
    /// Anthropic's `cache_read_input_tokens` and `cache_creation_input_tokens` (not part of
    /// its `input_tokens`).
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
    /// `completion_tokens_details.reasoning_tokens` / `output_tokens_details.reasoning_tokens`.
    pub reasoning: Option<u64>,
}

impl Reported {
    /// Every prompt token the provider processed: OpenAI's `prompt_tokens` includes cached
    /// ones; Anthropic's `input_tokens` excludes cache reads and writes, added here.
    pub fn prompt(&self) -> Option<u64> {
        self.input.map(|i| {
            i.saturating_add(self.cache_read.unwrap_or(0))
                .saturating_add(self.cache_creation.unwrap_or(0))
        })
    }

    /// The provider reported no token numbers at all.
    pub fn is_empty(&self) -> bool {
        self.input.is_none()
            && self.output.is_none()
            && self.cache_read.is_none()
            && self.cache_creation.is_none()
            && self.cached.is_none()
            && self.reasoning.is_none()
    }

    /// Prompt tokens served from the provider's cache.
    pub fn cached(&self) -> Option<u64> {
        self.cached.or(self.cache_read)
    }

    fn number(&mut self, path: &[Name], v: u64) {
        use Name::*;
        let rest = match path {
            [Usage, rest @ ..] | [Response | Message, Usage, rest @ ..] => rest,
            _ => return,
        };
        let slot = match rest {
            [PromptTokens | InputTokens] => &mut self.input,
            [CompletionTokens | OutputTokens] => &mut self.output,
            [TotalTokens] => &mut self.total,
            [CacheReadInputTokens] => &mut self.cache_read,
            [CacheCreationInputTokens] => &mut self.cache_creation,
            [PromptTokensDetails | InputTokensDetails, CachedTokens] => &mut self.cached,
            [CompletionTokensDetails | OutputTokensDetails, ReasoningTokens] => &mut self.reasoning,
            _ => return,
        };
        *slot = Some(v);
    }
}

/// What kind of text a string at `path` is, if it is completion text.
fn completion_text(path: &[Name]) -> Option<bool> {
    use Name::*;
    match path {
        // OpenAI chat (stream and JSON), legacy completions
        [Choices, Item, Delta | Message, Content] | [Choices, Item, Text] => Some(true),
        [Choices, Item, Delta | Message, ToolCalls, Item, Function, Arguments] => Some(false),
        // Anthropic stream: content_block_delta (text_delta, thinking_delta); Responses
        // stream: response.output_text.delta
        [Delta, Text | Thinking] | [Delta] => Some(true),
        // Anthropic JSON: content[].text; Responses JSON: output[].content[].text
        [Content, Item, Text | Thinking] | [Other, Item, Content, Item, Text] => Some(true),
        _ => None,
    }
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document.
    Json,
    /// `text/event-stream`: `data:` lines carry one JSON document per event.
    Sse,
}

impl Framing {
    /// From the response's `Content-Type`; `None` for bodies the tracker cannot read.
    pub fn of_content_type(ct: &[u8]) -> Option<Framing> {
        let ct = ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
        let is = |t: &[u8]| ct.eq_ignore_ascii_case(t);
        let json_suffix = ct.len() >= 5 && ct[ct.len() - 5..].eq_ignore_ascii_case(b"+json");
        if is(b"text/event-stream") {
            Some(Framing::Sse)
        } else if is(b"application/json") || json_suffix {
            Some(Framing::Json)
        } else {
            None
        }
    }
}

/// Everything the scanner reports into.
#[derive(Debug)]
struct Sink {
    reported: Reported,
    enc: Encoding,
    /// `enc` is the model's own encoding.
    exact_encoding: bool,
    /// Completion text not yet counted.
    text: String,
    /// Tokens of completion text already counted (slices past `TEXT_MAX`).
    text_tokens: u64,
    /// Whether any completion text was seen (an empty completion counts 0).
    saw_text: bool,
    /// Tool call arguments were part of the completion: a count of them is an estimate.
    saw_tool_json: bool,
    /// Facts of the current event are collected (a stream being rewritten).
    collect: bool,
    want: FactsWanted,
    facts: EventFacts,
}

impl Visitor for Sink {
    fn value(&mut self, path: &[Name], kind: Kind) {
        if self.collect {
            self.facts.value(path, kind);
        }
    }

    fn number(&mut self, path: &[Name], value: u64) {
        self.reported.number(path, value);
        if self.collect {
            self.facts.number(path, value);
        }
    }

    fn wants_string(&self, path: &[Name]) -> bool {
        completion_text(path).is_some() || self.collect && self.facts.wants(&self.want, path)
    }

    fn string(&mut self, path: &[Name], piece: &str, _last: bool) {
        if self.collect {
            self.facts.string(&self.want, path, piece);
        }
        let Some(plain) = completion_text(path) else {
            return;
        };
        self.saw_text = true;
        if !plain {
            self.saw_tool_json = true;
        }
        if self.text.len() + piece.len() > TEXT_MAX {
            self.text_tokens += self.enc.count(&self.text);
            self.text.clear();
        }
        if piece.len() > TEXT_MAX {
            self.text_tokens += self.enc.count(piece);
        } else {
            if self.text.capacity() == 0 {
                // the usual completion without reallocating
                self.text.reserve(TEXT_START.max(piece.len()));
            }
            self.text.push_str(piece);
        }
    }

    fn is_text(&self, path: &[Name]) -> bool {
        completion_text(path).is_some() || self.collect && self.facts.is_text(&self.want, path)
    }

    fn keeps_number(&self, path: &[Name]) -> bool {
        use Name::*;
        matches!(path, [Usage, ..] | [Response | Message, Usage, ..])
    }

    fn event_end(&mut self, data_lines: u32, complete: bool) {
        if self.collect {
            self.facts.data_lines = data_lines;
            self.facts.complete = complete;
        }
    }
}

/// Reads one response body as it streams by. See the module documentation.
#[derive(Debug)]
pub struct ResponseTracker {
    framing: Framing,
    scanner: Scanner,
    sse: SseReader,
    sink: Sink,
    /// The whole body went through (the last buffer was seen).
    complete: bool,
    /// Part of the body was never fed (nginx kept it in a file).
    missed: bool,
    /// Bytes seen.
    bytes: u64,
    /// The body's length, when its headers gave one.
    expected: Option<u64>,
    /// A JSON body read whole in one piece: whether it was one complete document.
    json_whole: Option<bool>,
}

impl ResponseTracker {
    /// `model_encoding` (the model's own, when public) counts the completion text if the
    /// provider reports no usage; without it o200k_base gives an estimate.
    pub fn new(framing: Framing, model_encoding: Option<Encoding>) -> Self {
        ResponseTracker {
            framing,
            scanner: Scanner::new(),
            sse: SseReader::default(),
            sink: Sink {
                reported: Reported::default(),
                enc: model_encoding.unwrap_or(Encoding::O200k),
                exact_encoding: model_encoding.is_some(),
                // room is made at the first text (an answer read usage first has none)
                text: String::new(),
                text_tokens: 0,
                saw_text: false,
                saw_tool_json: false,
                collect: false,
                want: FactsWanted::default(),
                facts: EventFacts::default(),
            },
            complete: false,
            missed: false,
            bytes: 0,
            expected: None,
            json_whole: None,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The next piece of the body, as sent to the client.
    pub fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        match self.framing {
            Framing::Json => {
                if self.bytes == data.len() as u64 && self.expected == Some(self.bytes) {
                    // the whole body in one piece (its length says so): the fast scan
                    let (end, _) = scan_whole(data, &mut self.sink);
                    self.json_whole = Some(end == Whole::Done);
                } else if self.json_whole.is_some() {
                    // more than the length said: not one document after all
                    self.json_whole = Some(false);
                } else {
                    self.scanner.feed(data, &mut self.sink);
                }
            }
            Framing::Sse => self.sse.feed(data, &mut self.scanner, &mut self.sink),
        }
    }

    /// The body's length from its headers (`Content-Length`): a JSON body that comes in one
    /// piece of that length is read by the whole-document scan.
    pub fn expect_len(&mut self, len: u64) {
        self.expected = Some(len);
    }

    /// Collects the facts of each event fed with [`feed_event`](Self::feed_event) (an event
    /// stream being rewritten).
    pub fn want_facts(&mut self, want: FactsWanted) {
        self.sink.collect = true;
        self.sink.want = want;
        // an event's text and the head's fields without reallocating
        self.sink.facts.text.reserve(256);
    }

    /// Whether id, model and creation time are collected.
    pub fn want_head(&mut self, head: bool) {
        if self.sink.want.head != head {
            self.sink.want.head = head;
            self.sse.forget_layout();
        }
    }

    /// One whole event of the stream (ending with its blank line, or the last bytes of the
    /// stream), read in one pass: its usage and text as [`feed`](Self::feed) reads them, and
    /// its facts. `line_break` is where its first line break is, when the caller knows.
    pub fn feed_event(&mut self, event: &[u8], line_break: Option<usize>) -> &EventFacts {
        self.sink.facts.reset();
        self.sink.facts.line_break = line_break;
        match self.framing {
            Framing::Sse => {
                self.bytes += event.len() as u64;
                self.sse
                    .event(event, line_break, &mut self.scanner, &mut self.sink);
            }
            Framing::Json => self.feed(event),
        }
        &self.sink.facts
    }

    /// The facts of the last event fed with [`feed_event`](Self::feed_event).
    pub fn facts(&self) -> &EventFacts {
        &self.sink.facts
    }

    /// The body is complete.
    pub fn finish(&mut self) {
        if self.complete {
            return;
        }
        self.complete = true;
        match self.framing {
            Framing::Json if self.json_whole.is_some() => {}
            Framing::Json => self.scanner.finish(&mut self.sink),
            Framing::Sse => self.sse.finish(&mut self.scanner, &mut self.sink),
        }
    }

    pub fn reported(&self) -> &Reported {
        &self.sink.reported
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Some of the body was not fed: a count of the completion text is only an estimate.
    pub fn mark_incomplete(&mut self) {
        self.missed = true;
    }

    /// The completion tokens the gateway counts in the text it saw (an estimate when tool
    /// call arguments were part of it or the encoding is not the model's). `None` when the
    /// body could not be read as JSON or events (e.g. it was not JSON at all).
    fn counted_completion(&self) -> Option<(u64, Source)> {
        let readable = match self.framing {
            Framing::Json => self.json_whole.unwrap_or_else(|| self.scanner.is_done()),
            Framing::Sse => self.sse.events() > 0 || self.bytes == 0,
        };
        if !readable && !self.sink.saw_text {
            return None;
        }
        let tokens = self.sink.text_tokens + self.sink.enc.count(&self.sink.text);
        let exact =
            self.sink.exact_encoding && !self.sink.saw_tool_json && self.complete && !self.missed;
        Some((
            tokens,
            if exact {
                Source::Counted
            } else {
                Source::Estimated
            },
        ))
    }
}

/// The most tokens a single number of a provider's usage may be (prompt, completion, cache
/// reads and writes, cached, reasoning): five times the largest context window of any model
/// today (2M). A larger number is not believed: it would go to the token windows, quotas and
/// metrics, and one answer could lock a namespace out.
pub const USAGE_MAX: u64 = 10_000_000;

/// A number of the provider's usage that was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Implausible {
    /// What it counted: `prompt`, `completion`, `cache_read`, `cache_creation`, `cached`,
    /// `reasoning`.
    pub field: &'static str,
    pub value: u64,
}

/// A request's token usage, settled at its end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cached: Option<u64>,
    pub reasoning: Option<u64>,
    /// The weakest source among the known parts; `None` when nothing is known ("unknown").
    pub source: Option<Source>,
    /// The first number of the provider's that was not believed (the gateway's own count
    /// took its place).
    pub implausible: Option<Implausible>,
}

impl TokenUsage {
    pub fn total(&self) -> Option<u64> {
        Some(self.prompt?.saturating_add(self.completion?))
    }

    pub fn source_str(&self) -> &'static str {
        self.source.map_or("unknown", Source::as_str)
    }
}

fn weaker(a: Option<Source>, b: Source) -> Source {
    let rank = |s: Source| match s {
        Source::Provider => 0,
        Source::Counted => 1,
        Source::Estimated => 2,
    };
    match a {
        Some(a) if rank(a) > rank(b) => a,
        _ => b,
    }
}

/// The provider's numbers that are believed: each at most [`USAGE_MAX`], the prompt only when
/// all its parts are, cached at most the prompt, reasoning at most the completion.
fn plausible(r: &Reported, bad: &mut Option<Implausible>) -> Reported {
    let mut check = |field: &'static str, v: Option<u64>| match v {
        Some(value) if value > USAGE_MAX => {
            bad.get_or_insert(Implausible { field, value });
            None
        }
        v => v,
    };
    let input = check("prompt", r.input);
    let cache_read = check("cache_read", r.cache_read);
    let cache_creation = check("cache_creation", r.cache_creation);
    let output = check("completion", r.output);
    let cached = check("cached", r.cached);
    let reasoning = check("reasoning", r.reasoning);
    let prompt_whole = input.is_some()
        && cache_read.is_some() == r.cache_read.is_some()
        && cache_creation.is_some() == r.cache_creation.is_some();
    let mut p = Reported {
        input: input.filter(|_| prompt_whole),
        output,
        total: None,
        cached,
        cache_read: cache_read.filter(|_| prompt_whole),
        cache_creation: cache_creation.filter(|_| prompt_whole),
        reasoning,
    };
    let prompt = p.prompt();
    if let (Some(c), Some(pr)) = (p.cached(), prompt) {
        if c > pr {
            bad.get_or_insert(Implausible {
                field: "cached",
                value: c,
            });
            p.cached = None;
        }
    }
    if let (Some(rs), Some(o)) = (p.reasoning, p.output) {
        if rs > o {
            bad.get_or_insert(Implausible {
                field: "reasoning",
                value: rs,
            });
            p.reasoning = None;
        }
    }
    p
}

/// Settles a request's usage: the provider's numbers where it reported plausible ones
/// (see [`USAGE_MAX`]); otherwise the gateway's own count of the prompt (`count_prompt`,
/// called only when needed) and of the completion text it saw. A count that stands in for
/// a number the provider reported but that was not believed is an estimate (the provider may
/// count what the gateway does not see).
pub fn settle(
    tracker: Option<&ResponseTracker>,
    count_prompt: impl FnOnce() -> Option<PromptCount>,
) -> TokenUsage {
    let mut u = TokenUsage::default();
    let raw = tracker.map(|t| *t.reported()).unwrap_or_default();
    let reported = plausible(&raw, &mut u.implausible);
    let mut source: Option<Source> = None;
    match reported.prompt() {
        Some(p) => {
            u.prompt = Some(p);
            source = Some(Source::Provider);
        }
        None => {
            if let Some(c) = count_prompt() {
                u.prompt = Some(c.tokens);
                let s = if raw.input.is_some() {
                    Source::Estimated
                } else {
                    c.source
                };
                source = Some(weaker(source, s));
            }
        }
    }
    match reported.output {
        Some(o) => {
            u.completion = Some(o);
            source = Some(weaker(source, Source::Provider));
        }
        None => {
            if let Some((n, s)) = tracker.and_then(ResponseTracker::counted_completion) {
                u.completion = Some(n);
                let s = if raw.output.is_some() {
                    Source::Estimated
                } else {
                    s
                };
                source = Some(weaker(source, s));
            }
        }
    }
    // cached tokens are part of the prompt, reasoning of the completion: not believed when
    // the number they are part of was not
    u.cached = reported
        .cached()
        .filter(|_| raw.input.is_none() || reported.input.is_some());
    u.reasoning = reported
        .reasoning
        .filter(|_| raw.output.is_none() || reported.output.is_some());
    u.source = source;
    u
}

#[cfg(test)]
mod tests;
