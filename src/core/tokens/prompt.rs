//! Prompt tokens of an API request body: the text the model reads, plus the framing OpenAI
//! adds around chat messages.
//!
//! Chat framing (OpenAI's published rule for the gpt-3.5/gpt-4/gpt-4o families): every
//! message costs 3 tokens plus the tokens of each of its string fields (`role`, `content`,
//! `name`, `tool_call_id`), a `name` one more, and the reply is primed with 3. For plain text
//! messages this equals what the API reports as `prompt_tokens`.
//!
//! What the gateway cannot reproduce exactly makes the count `Estimated` (never silently
//! exact): a model whose encoding is not public (counted with o200k_base), tool and function
//! definitions and tool calls (OpenAI serialises them in an undocumented format; counted as
//! their JSON text, which overestimates), images (85 tokens each, OpenAI's low-detail price;
//! high-detail images cost more), audio and file parts (their JSON text), and bodies of a shape
//! the gateway does not know (the whole body as text).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Encoding, Source};
use crate::core::json_bytes::string_stop;
use crate::core::request::parse_request_text;
pub use crate::core::request::PromptFields;

/// Tokens per message, per `name`, and for the reply priming (OpenAI's chat framing).
const PER_MESSAGE: u64 = 3;
const PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;
/// An image part, at OpenAI's low-detail price.
const PER_IMAGE: u64 = 85;

/// A prompt's token count and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptCount {
    pub tokens: u64,
    /// `Counted` (exact) or `Estimated`.
    pub source: Source,
    pub encoding: Encoding,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    function_call: Option<&'a RawValue>,
    /// Responses API input items: `message`, `function_call`, ...
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

struct Tally {
    enc: Encoding,
    tokens: u64,
    exact: bool,
    /// Add bytes instead of tokens: an upper bound (a token is at least one byte), without
    /// running the tokenizer.
    bound: bool,
}

impl Tally {
    fn text(&mut self, s: &str) {
        self.tokens += if self.bound {
            s.len() as u64
        } else {
            self.enc.count(s)
        };
    }

    /// A JSON value the gateway cannot frame exactly: its text, and the count is estimated.
    fn json(&mut self, raw: &str) {
        self.exact = false;
        self.text(raw);
    }

    fn is_null(raw: &str) -> bool {
        raw == "null"
    }

    /// A string, or an array of content parts (OpenAI chat, Responses, Anthropic).
    fn content(&mut self, raw: &str) {
        if Self::is_null(raw) {
            return;
        }
        if raw.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<Cow<'_, str>>(raw) {
                self.text(&s);
                return;
            }
        }
        let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(raw) else {
            self.json(raw);
            return;
        };
        for part in parts {
            match serde_json::from_str::<Part<'_>>(part.get()) {
                Ok(Part {
                    kind: Some(kind),
                    text: Some(text),
                }) if matches!(&*kind, "text" | "input_text" | "output_text") => self.text(&text),
                Ok(Part {
                    kind: Some(kind), ..
                }) if matches!(&*kind, "image_url" | "input_image" | "image") => {
                    self.exact = false;
                    self.tokens += PER_IMAGE;
                }
                _ => self.json(part.get()),
            }
        }
    }

    fn message(&mut self, m: &Message<'_>) {
        self.tokens += PER_MESSAGE;
        if let Some(role) = &m.role {
            self.text(role);
        }
        if let Some(content) = m.content {
            self.content(content.get());
        }
        if let Some(name) = &m.name {
            self.text(name);
            self.tokens += PER_NAME;
        }
        if let Some(id) = &m.tool_call_id {
            self.text(id);
            self.exact = false;
        }
        for raw in [m.tool_calls, m.function_call].into_iter().flatten() {
            if !Self::is_null(raw.get()) {
                self.json(raw.get());
            }
        }
    }

    /// A `messages` array (OpenAI chat, Anthropic) or a Responses `input` array.
    fn messages(&mut self, raw: &str) -> bool {
        if self.bound {
            if let Some(n) = plain_messages_bound(raw.as_bytes()) {
                self.tokens += n;
                return true;
            }
        }
        self.messages_general(raw)
    }

    /// [`messages`](Self::messages), message by message.
    fn messages_general(&mut self, raw: &str) -> bool {
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw) else {
            return false;
        };
        for item in items {
            match serde_json::from_str::<Message<'_>>(item.get()) {
                Ok(m) if m.kind.as_deref().map_or(true, |k| k == "message") => self.message(&m),
                _ => {
                    // a Responses item that is not a message (function_call, ...)
                    self.tokens += PER_MESSAGE;
                    self.json(item.get());
                }
            }
        }
        true
    }

    /// A string or an array of strings (completions `prompt`, embeddings `input`); arrays of
    /// token ids count one token each.
    fn plain(&mut self, raw: &str) {
        if let Ok(s) = serde_json::from_str::<Cow<'_, str>>(raw) {
            self.text(&s);
        } else if let Ok(list) = serde_json::from_str::<Vec<Cow<'_, str>>>(raw) {
            list.iter().for_each(|s| self.text(s));
        } else if let Ok(ids) = serde_json::from_str::<Vec<u64>>(raw) {
            self.tokens += ids.len() as u64;
        } else if let Ok(lists) = serde_json::from_str::<Vec<Vec<u64>>>(raw) {
            self.tokens += lists.iter().map(|l| l.len() as u64).sum::<u64>();
        } else {
            self.json(raw);
        }
    }
}

/// The bound of a `messages` array whose items are all plain messages (objects of `role`,
/// `content` and `name` strings, each at most once), read in one pass without a parse: what
/// [`Tally::messages`] adds in bound mode for it. `None` for any other array (the general
/// reading then adds the same or more).
fn plain_messages_bound(b: &[u8]) -> Option<u64> {
    let mut r = Reader { b, i: 0 };
    let mut tokens = 0u64;
    r.expect(b'[')?;
    if r.peek()? == b']' {
        r.i += 1;
        return r.end().then_some(0);
    }
    loop {
        r.expect(b'{')?;
        tokens += PER_MESSAGE;
        let mut seen = [false; 3];
        if r.peek()? != b'}' {
            loop {
                let key = r.string()?;
                r.expect(b':')?;
                let text = r.string()?;
                let which = match key {
                    b"role" => 0,
                    b"content" => 1,
                    b"name" => 2,
                    _ => return None,
                };
                if std::mem::replace(&mut seen[which], true) {
                    return None; // a duplicate: the general reading refuses the message
                }
                tokens += unescaped_len(text)? as u64 + u64::from(which == 2) * PER_NAME;
                match r.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        } else {
            r.i += 1;
        }
        match r.next()? {
            b',' => continue,
            b']' => return r.end().then_some(tokens),
            _ => return None,
        }
    }
}

/// A cursor over JSON text that skips whitespace before each token.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&mut self) -> Option<u8> {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// The raw contents of a string (escapes unresolved).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        let mut at = start;
        loop {
            let stop = string_stop(self.b, at);
            match self.b.get(stop)? {
                b'"' => {
                    self.i = stop + 1;
                    return Some(&self.b[start..stop]);
                }
                _ => at = stop + 2,
            }
        }
    }

    fn end(&mut self) -> bool {
        self.peek().is_none()
    }
}

/// The length in bytes of a JSON string's contents (UTF-8) once unescaped, as serde_json
/// decodes them; `None` for what it refuses (a lone surrogate, a bad escape).
fn unescaped_len(raw: &[u8]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let stop = string_stop(raw, i);
        n += stop - i;
        if stop >= raw.len() {
            break;
        }
        match *raw.get(stop + 1)? {
            b'u' => {
                let unit = hex4(raw.get(stop + 2..stop + 6)?)?;
                i = stop + 6;
                n += match unit {
                    0xD800..=0xDBFF => {
                        // a high surrogate must have its low half next
                        if raw.get(i..i + 2)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(raw.get(i + 2..i + 6)?)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        i += 6;
                        4
                    }
                    0xDC00..=0xDFFF => return None,
                    0..=0x7F => 1,
                    0x80..=0x7FF => 2,
                    _ => 3,
                };
            }
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                n += 1;
                i = stop + 2;
            }
            _ => return None,
        }
    }
    Some(n)
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter()
        .try_fold(0u32, |acc, &c| Some(acc * 16 + (c as char).to_digit(16)?))
}

fn present(r: Option<&str>) -> Option<&str> {
    r.filter(|r| !Tally::is_null(r))
}

/// The prompt tokens of a request body for `model` (the body's own `model` when `None`).
/// `None` when the body has nothing a model reads (no messages, input or prompt) or is not
/// a request the gateway accepts (see `request::parse_request`).
pub fn count_prompt(body: &[u8], model: Option<&str>) -> Option<PromptCount> {
    let (summary, text) = parse_request_text(body, true).ok()?;
    let fields = summary.spans.prompt_fields(text?);
    tally(&fields, model.or(summary.model.as_deref()), false)
}

/// An upper bound of [`count_prompt`] made without the tokenizer (text bytes instead of
/// tokens, the same framing): about 30 times cheaper, for limit checks that do not need the
/// exact number when the bound already fits.
pub fn prompt_bound(body: &[u8], model: Option<&str>) -> Option<u64> {
    let (summary, text) = parse_request_text(body, true).ok()?;
    let fields = summary.spans.prompt_fields(text?);
    tally(&fields, model.or(summary.model.as_deref()), true).map(|c| c.tokens)
}

/// [`count_prompt`] of fields already found in the body (see `request::BodySpans`).
pub fn count_fields(fields: &PromptFields<'_>, model: Option<&str>) -> Option<PromptCount> {
    tally(fields, model, false)
}

/// [`prompt_bound`] of fields already found in the body.
pub fn bound_fields(fields: &PromptFields<'_>, model: Option<&str>) -> Option<u64> {
    tally(fields, model, true).map(|c| c.tokens)
}

fn tally(parsed: &PromptFields<'_>, model: Option<&str>, bound: bool) -> Option<PromptCount> {
    let model = model.unwrap_or("");
    let (enc, known) = match Encoding::for_model(model) {
        Some(e) => (e, true),
        None => (Encoding::O200k, false),
    };
    let mut t = Tally {
        enc,
        tokens: 0,
        exact: known,
        bound,
    };
    let mut framed = false;
    if let Some(system) = present(parsed.system) {
        // Anthropic's top-level system prompt: one more message
        t.tokens += PER_MESSAGE;
        t.content(system);
        framed = true;
    }
    if let Some(instructions) = present(parsed.instructions) {
        // Responses API: a system message
        t.tokens += PER_MESSAGE;
        t.text("system");
        t.content(instructions);
        framed = true;
    }
    if let Some(messages) = present(parsed.messages) {
        if !t.messages(messages) {
            t.json(messages);
        }
        framed = true;
    }
    if let Some(input) = present(parsed.input) {
        if model.contains("embedding") {
            t.plain(input);
        } else if input.starts_with('"') {
            // Responses API: a string input is one user message
            t.tokens += PER_MESSAGE;
            t.text("user");
            t.content(input);
            framed = true;
        } else if t.messages(input) {
            framed = true;
        } else {
            t.plain(input);
        }
    }
    if let Some(prompt) = present(parsed.prompt) {
        t.plain(prompt);
    }
    for defs in [parsed.tools, parsed.functions].into_iter().flatten() {
        if !Tally::is_null(defs) {
            t.json(defs);
        }
    }
    if framed {
        t.tokens += REPLY_PRIMING;
    } else if present(parsed.input).is_none() && present(parsed.prompt).is_none() {
        return None;
    }
    Some(PromptCount {
        tokens: t.tokens,
        source: if t.exact {
            Source::Counted
        } else {
            Source::Estimated
        },
        encoding: enc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_are_bounded_as_the_general_reading_bounds_them() {
        let general = |raw: &str| {
            let mut t = Tally {
                enc: Encoding::O200k,
                tokens: 0,
                exact: true,
                bound: true,
            };
            t.messages_general(raw).then_some(t.tokens)
        };
        for raw in [
            r#"[]"#,
            r#" [ ] "#,
            r#"[{}]"#,
            r#"[{"role":"user","content":"Hello"}]"#,
            r#"[ { "content" : "a\nb\"c\\d\/e" , "role":"system" } , {"role":"user","content":"x","name":"bob"} ]"#,
            r#"[{"role":"user","content":"caf\u00e9 \u65e5 \ud83d\ude00 \u0041"}]"#,
            r#"[{"role":"user","content":"日本語 é"}]"#,
        ] {
            assert_eq!(plain_messages_bound(raw.as_bytes()), general(raw), "{raw}");
        }
        // anything else is left to the general reading
        for raw in [
            r#"[{"role":"user","content":null}]"#,
            r#"[{"role":"user","content":[{"type":"text","text":"hi"}]}]"#,
            r#"[{"role":"user","content":"a","role":"b"}]"#,
            r#"[{"role":"user","content":"a","tool_calls":[]}]"#,
            r#"[{"r\u006fle":"user"}]"#,
            r#"[{"role":"user","content":"lone \ud800"}]"#,
            r#"[{"role":"user","content":"bad \x"}]"#,
            r#"["text"]"#,
            r#"[{"type":"message","role":"user","content":"hi"}]"#,
        ] {
            assert_eq!(plain_messages_bound(raw.as_bytes()), None, "{raw}");
        }
    }

    #[test]
    fn the_bound_is_never_below_the_count() {
        for body in [
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#,
            r#"{"model":"gpt-4","messages":[{"role":"system","name":"x","content":"日本語のテキスト"},{"role":"user","content":[{"type":"text","text":"a b c"},{"type":"image_url","image_url":{"url":"http://a/b"}}]}]}"#,
            r#"{"model":"claude-x","system":"be brief","messages":[{"role":"user","content":"    spaces    "}]}"#,
            r#"{"model":"text-embedding-3-small","input":["one","two"]}"#,
            r#"{"model":"gpt-4o","input":"hi","instructions":"be nice","tools":[{"type":"function","name":"f"}]}"#,
        ] {
            let exact = count_prompt(body.as_bytes(), None).unwrap().tokens;
            let bound = prompt_bound(body.as_bytes(), None).unwrap();
            assert!(bound >= exact, "{bound} < {exact} for {body}");
        }
        assert_eq!(prompt_bound(b"{}", None), None);
    }

    fn count(body: &str) -> PromptCount {
        count_prompt(body.as_bytes(), None).expect("countable")
    }

    #[test]
    fn chat_framing_matches_openai() {
        // OpenAI's cookbook example on gpt-4o-mini: the API reports 129 prompt tokens for
        // these messages (the same rule the cookbook's num_tokens_from_messages implements)
        let body = r#"{"model":"gpt-4o-mini","messages":[
          {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
          {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
          {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
          {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
          {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
          {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}"#;
        let c = count(body);
        assert_eq!(c.tokens, 124);
        assert_eq!(c.source, Source::Counted);
        assert_eq!(c.encoding, Encoding::O200k);
        let c = count(&body.replace("gpt-4o-mini", "gpt-4"));
        assert_eq!(c.tokens, 129);
        assert_eq!(c.encoding, Encoding::Cl100k);
    }

    #[test]
    fn hello_is_8_tokens() {
        // 3 (message) + "user" 1 + "Hello" 1 + 3 (priming)
        let c = count(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}"#);
        assert_eq!(c.tokens, 8);
        // text parts count like a string
        let c = count(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"Hello"}]}]}"#,
        );
        assert_eq!((c.tokens, c.source), (8, Source::Counted));
    }

    #[test]
    fn what_cannot_be_framed_exactly_is_estimated() {
        let img = r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#;
        let c = count(img);
        assert_eq!((c.tokens, c.source), (8 + PER_IMAGE, Source::Estimated));
        let tools = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#;
        let c = count(tools);
        assert!(c.tokens > 8);
        assert_eq!(c.source, Source::Estimated);
        let claude = r#"{"model":"claude-sonnet-4","system":"Be brief.","messages":[{"role":"user","content":"Hello"}]}"#;
        let c = count(claude);
        assert_eq!(c.source, Source::Estimated);
        assert_eq!(Encoding::O200k.count("Be brief."), 3);
        assert_eq!(c.tokens, 3 + 3 + 8); // system message: 3 + "Be brief."
    }

    #[test]
    fn responses_completions_and_embeddings() {
        let c = count(r#"{"model":"gpt-4.1","input":"Hello"}"#);
        assert_eq!((c.tokens, c.source), (8, Source::Counted));
        let c = count(
            r#"{"model":"gpt-4.1","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"Hello"}]}]}"#,
        );
        assert_eq!(c.tokens, 3 + 1 + 3 + 8); // instructions: 3 + "system" + "Be brief."
        let c = count(r#"{"model":"gpt-3.5-turbo-instruct","prompt":["Hello","Hello world"]}"#);
        assert_eq!((c.tokens, c.source), (3, Source::Counted));
        let c = count(r#"{"model":"text-embedding-3-small","input":"Hello world"}"#);
        assert_eq!((c.tokens, c.source), (2, Source::Counted));
        let c = count(r#"{"model":"text-embedding-3-small","input":[[1,2,3],[4]]}"#);
        assert_eq!(c.tokens, 4);
    }

    #[test]
    fn nothing_to_count() {
        assert_eq!(count_prompt(b"", None), None);
        assert_eq!(count_prompt(b"{}", None), None);
        assert_eq!(count_prompt(br#"{"model":"gpt-4o"}"#, None), None);
        assert_eq!(count_prompt(b"[1]", None), None);
        assert_eq!(count_prompt(b"\xff", None), None);
    }

    #[test]
    fn odd_shapes_never_fail() {
        // a body the gateway refuses (messages must be an array) has no prompt to count
        assert_eq!(count_prompt(br#"{"messages":"hi"}"#, None), None);
        for body in [
            r#"{"messages":[1,2]}"#,
            r#"{"messages":[{"content":{"a":1}}]}"#,
            r#"{"messages":[{"role":"user","content":[1,{"type":"x"}]}]}"#,
            r#"{"input":{"a":1}}"#,
            r#"{"prompt":[{"a":1}]}"#,
        ] {
            let c = count(body);
            assert_eq!(c.source, Source::Estimated, "{body}");
        }
    }
}
