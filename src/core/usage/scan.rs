//! An incremental JSON scanner: it reads one JSON document fed in pieces that may split
//! anywhere (inside a key, a number, a string escape or a UTF-8 sequence), keeps no copy of
//! the document, and tells a [`Visitor`] about the integers it finds and about the strings at
//! the paths the visitor asks for.
//!
//! State is bounded: a path of at most [`MAX_DEPTH`] names, one key of at most
//! [`KEY_MAX`] bytes, one number, and the string being captured (at most [`STRING_MAX`]
//! bytes before it is handed over in pieces). A document nested deeper than `MAX_DEPTH`, or
//! one that is not JSON (`[DONE]`, an HTML error page), stops the scan: what was found before
//! stays found.

use crate::core::json_bytes::lossy;
pub(crate) use crate::core::json_bytes::string_stop;

/// Deepest nesting followed; a deeper document stops the scan.
pub const MAX_DEPTH: usize = 32;
/// Longest key recognised (longer keys are [`Name::Other`]).
pub const KEY_MAX: usize = 32;
/// A captured string is handed over in pieces of at most this many bytes (cut at a UTF-8
/// character boundary).
pub const STRING_MAX: usize = 16 * 1024;

/// The object keys the gateway cares about; everything else is `Other`. Array elements are
/// `Item`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Other,
    Item,
    Usage,
    Response,
    Message,
    Choices,
    Delta,
    Content,
    Text,
    Thinking,
    ToolCalls,
    Function,
    Arguments,
    Id,
    Model,
    Created,
    Index,
    Type,
    ReasoningContent,
    Reasoning,
    Refusal,
    PartialJson,
    PromptTokens,
    CompletionTokens,
    TotalTokens,
    InputTokens,
    OutputTokens,
    CacheCreationInputTokens,
    CacheReadInputTokens,
    PromptTokensDetails,
    CompletionTokensDetails,
    InputTokensDetails,
    OutputTokensDetails,
    CachedTokens,
    ReasoningTokens,
    // OpenAI Responses events
    SequenceNumber,
    OutputIndex,
    ContentIndex,
    SummaryIndex,
    ItemId,
    /// The key `item` (Responses' output item; array elements are [`Name::Item`]).
    ItemKey,
    Part,
    CreatedAt,
    CallId,
    /// The key `name` (a function call's).
    FunctionName,
}

impl Name {
    pub fn of(key: &[u8]) -> Name {
        match key {
            b"usage" => Name::Usage,
            b"response" => Name::Response,
            b"message" => Name::Message,
            b"choices" => Name::Choices,
            b"delta" => Name::Delta,
            b"content" => Name::Content,
            b"text" => Name::Text,
            b"thinking" => Name::Thinking,
            b"tool_calls" => Name::ToolCalls,
            b"function" => Name::Function,
            b"arguments" => Name::Arguments,
            b"id" => Name::Id,
            b"model" => Name::Model,
            b"created" => Name::Created,
            b"index" => Name::Index,
            b"type" => Name::Type,
            b"reasoning_content" => Name::ReasoningContent,
            b"reasoning" => Name::Reasoning,
            b"refusal" => Name::Refusal,
            b"partial_json" => Name::PartialJson,
            b"prompt_tokens" => Name::PromptTokens,
            b"completion_tokens" => Name::CompletionTokens,
            b"total_tokens" => Name::TotalTokens,
            b"input_tokens" => Name::InputTokens,
            b"output_tokens" => Name::OutputTokens,
            b"cache_creation_input_tokens" => Name::CacheCreationInputTokens,
            b"cache_read_input_tokens" => Name::CacheReadInputTokens,
            b"prompt_tokens_details" => Name::PromptTokensDetails,
            b"completion_tokens_details" => Name::CompletionTokensDetails,
            b"input_tokens_details" => Name::InputTokensDetails,
            b"output_tokens_details" => Name::OutputTokensDetails,
            b"cached_tokens" => Name::CachedTokens,
            b"reasoning_tokens" => Name::ReasoningTokens,
            b"sequence_number" => Name::SequenceNumber,
            b"output_index" => Name::OutputIndex,
            b"content_index" => Name::ContentIndex,
            b"summary_index" => Name::SummaryIndex,
            b"item_id" => Name::ItemId,
            b"item" => Name::ItemKey,
            b"part" => Name::Part,
            b"created_at" => Name::CreatedAt,
            b"call_id" => Name::CallId,
            b"name" => Name::FunctionName,
            _ => Name::Other,
        }
    }
}

/// The kind of a value, reported for values at most [`SHAPE_DEPTH`] levels deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    /// `true`, `false` or `null` (`null` is reported as [`Kind::Null`]).
    Literal,
    Null,
}

/// Values at most this deep (path length) are reported to [`Visitor::value`].
pub const SHAPE_DEPTH: usize = 2;

/// What the scanner reports. `path` names the value from the root: object keys, `Item` for
/// array elements.
pub trait Visitor {
    /// A value begins at `path` (at most [`SHAPE_DEPTH`] long): what the document looks like
    /// near its top, e.g. whether `usage` is null or `choices` empty.
    fn value(&mut self, _path: &[Name], _kind: Kind) {}
    /// A non-negative integer (no fraction, no exponent, fits in u64).
    fn number(&mut self, path: &[Name], value: u64);
    /// Whether the string value at `path` should be captured.
    fn wants_string(&self, path: &[Name]) -> bool;
    /// A captured string value, unescaped, in one or more pieces (each valid UTF-8);
    /// `last` is set on the final piece.
    fn string(&mut self, path: &[Name], piece: &str, last: bool);
    /// An event of a stream ended (see [`SseLines`](super::SseLines)): its data lines and
    /// whether they held one complete document.
    fn event_end(&mut self, _data_lines: u32, _complete: bool) {}
    /// Whether a captured string at `path` is text that varies from event to event (what a
    /// memo of the event's layout leaves out, see `event_memo`); other captured strings are
    /// facts the layout determines.
    fn is_text(&self, _path: &[Name]) -> bool {
        false
    }
    /// Whether a number at `path` changes what the visitor has read so far beyond the event
    /// (e.g. usage); an event with such a number is not memoised.
    fn keeps_number(&self, _path: &[Name]) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is expected (document start, after `:`, after `,` in an array, after `[`).
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After a value: `,`, `}` or `]` (or the end of the document).
    AfterValue,
    Str,
    Number,
    Literal,
    Done,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    Backslash,
    /// Inside `\uXXXX`: digits still expected and the value so far.
    Unicode(u8, u32),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// Per open container: true for an object.
    objects: [bool; MAX_DEPTH],
    /// Per open container: the name of the value being read in it.
    path: [Name; MAX_DEPTH],
    depth: usize,
    // string
    str_is_key: bool,
    str_capture: bool,
    esc: Esc,
    /// A high surrogate waiting for its low half.
    high_surrogate: Option<u32>,
    key: [u8; KEY_MAX],
    key_len: usize,
    key_overflow: bool,
    captured: Vec<u8>,
    // number
    num: u64,
    num_ok: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            state: State::Value,
            objects: [false; MAX_DEPTH],
            path: [Name::Other; MAX_DEPTH],
            depth: 0,
            str_is_key: false,
            str_capture: false,
            esc: Esc::No,
            high_surrogate: None,
            key: [0; KEY_MAX],
            key_len: 0,
            key_overflow: false,
            captured: Vec::new(),
            num: 0,
            num_ok: false,
        }
    }

    /// Starts a new document (keeps the capture buffer's memory).
    pub fn reset(&mut self) {
        self.state = State::Value;
        self.depth = 0;
        self.captured.clear();
    }

    /// Whether the document is complete (its top-level value closed).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the scan stopped on something that is not JSON (or nested too deep).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Reads the next piece of the document.
    pub fn feed<V: Visitor>(&mut self, data: &[u8], v: &mut V) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Done | State::Stopped => {
                    if self.state == State::Done && data[i..].iter().all(u8::is_ascii_whitespace) {
                        return;
                    }
                    self.state = State::Stopped;
                    return;
                }
                State::Str => {
                    i = self.string_bytes(data, i, v);
                    continue;
                }
                State::Number => {
                    // the digits in this piece, in one go
                    while let Some(&c) = data.get(i) {
                        match c {
                            b'0'..=b'9' => {
                                let d = u64::from(c - b'0');
                                // an integer past u64 is held at u64::MAX: it is reported
                                // (and judged implausible), not dropped
                                self.num = self.num.saturating_mul(10).saturating_add(d);
                            }
                            b'.' | b'e' | b'E' | b'+' | b'-' => self.num_ok = false,
                            _ => break,
                        }
                        i += 1;
                    }
                    if i < data.len() {
                        // the byte after the number is structural: read in the new state
                        self.end_number(v);
                    }
                    continue;
                }
                State::Literal => {
                    if data[i].is_ascii_alphabetic() {
                        i += 1;
                    } else {
                        self.end_value();
                    }
                    continue;
                }
                _ => {}
            }
            let c = data[i];
            i += 1;
            if c.is_ascii_whitespace() {
                continue;
            }
            if c == b'"' {
                // the usual strings: unescaped and whole in this piece, read in place
                match self.state {
                    State::Key | State::KeyOrEnd => {
                        if let Some(len) = short_key(&data[i..]) {
                            if self.depth > 0 {
                                self.path[self.depth - 1] = Name::of(&data[i..i + len]);
                            }
                            self.state = State::Colon;
                            i += len + 1;
                            continue;
                        }
                    }
                    State::Value | State::ValueOrEnd => {
                        let stop = string_stop(data, i);
                        if stop < data.len() && data[stop] == b'"' && stop - i <= STRING_MAX {
                            self.shape(Kind::String, v);
                            let path = &self.path[..self.depth];
                            if v.wants_string(path) {
                                v.string(path, &lossy(&data[i..stop]), true);
                            }
                            self.end_value();
                            i = stop + 1;
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            match (c, self.state) {
                // the two most frequent: after a key, and between members
                (b':', State::Colon) => self.state = State::Value,
                (b',', State::AfterValue) if self.depth > 0 => {
                    self.state = if self.objects[self.depth - 1] {
                        State::Key
                    } else {
                        State::Value
                    };
                }
                _ => self.structural(c, v),
            }
        }
    }

    /// The document ended (no more bytes will come): a number at the very end is complete.
    pub fn finish<V: Visitor>(&mut self, v: &mut V) {
        if self.state == State::Number {
            self.end_number(v);
        }
    }

    fn structural<V: Visitor>(&mut self, c: u8, v: &mut V) {
        use State::*;
        match (self.state, c) {
            (Value | ValueOrEnd, b'{') => {
                self.shape(Kind::Object, v);
                self.open(true)
            }
            (Value | ValueOrEnd, b'[') => {
                self.shape(Kind::Array, v);
                self.open(false)
            }
            (Value | ValueOrEnd, b'"') => {
                self.shape(Kind::String, v);
                self.begin_string(false, v)
            }
            (Value | ValueOrEnd, b'-' | b'0'..=b'9') => {
                self.shape(Kind::Number, v);
                self.state = Number;
                self.num_ok = c != b'-';
                self.num = if c == b'-' { 0 } else { u64::from(c - b'0') };
            }
            (Value | ValueOrEnd, b't' | b'f' | b'n') => {
                self.shape(if c == b'n' { Kind::Null } else { Kind::Literal }, v);
                self.state = Literal
            }
            (ValueOrEnd, b']') => self.close(false),
            (KeyOrEnd, b'}') => self.close(true),
            (KeyOrEnd | Key, b'"') => self.begin_string(true, v),
            (Colon, b':') => self.state = Value,
            (AfterValue, b',') if self.depth > 0 => {
                self.state = if self.objects[self.depth - 1] {
                    Key
                } else {
                    Value
                };
            }
            (AfterValue, b'}') => self.close(true),
            (AfterValue, b']') => self.close(false),
            _ => self.state = Stopped,
        }
    }

    /// Reports a value near the top of the document.
    #[inline]
    fn shape<V: Visitor>(&mut self, kind: Kind, v: &mut V) {
        if self.depth <= SHAPE_DEPTH {
            v.value(&self.path[..self.depth], kind);
        }
    }

    fn open(&mut self, object: bool) {
        if self.depth == MAX_DEPTH {
            self.state = State::Stopped;
            return;
        }
        self.objects[self.depth] = object;
        self.path[self.depth] = if object { Name::Other } else { Name::Item };
        self.depth += 1;
        self.state = if object {
            State::KeyOrEnd
        } else {
            State::ValueOrEnd
        };
    }

    fn close(&mut self, object: bool) {
        if self.depth == 0 || self.objects[self.depth - 1] != object {
            self.state = State::Stopped;
            return;
        }
        self.depth -= 1;
        self.end_value();
    }

    /// A value ended: what may follow depends on where it was.
    fn end_value(&mut self) {
        self.state = if self.depth == 0 {
            State::Done
        } else {
            State::AfterValue
        };
    }

    fn end_number<V: Visitor>(&mut self, v: &mut V) {
        if self.num_ok {
            v.number(&self.path[..self.depth], self.num);
        }
        self.end_value();
    }

    fn begin_string<V: Visitor>(&mut self, is_key: bool, v: &mut V) {
        self.state = State::Str;
        self.str_is_key = is_key;
        self.esc = Esc::No;
        self.high_surrogate = None;
        self.key_len = 0;
        self.key_overflow = false;
        self.str_capture = !is_key && v.wants_string(&self.path[..self.depth]);
        self.captured.clear();
    }

    /// Reads string bytes from `data[i..]`; returns where it stopped.
    fn string_bytes<V: Visitor>(&mut self, data: &[u8], mut i: usize, v: &mut V) -> usize {
        let skipping = !self.str_is_key && !self.str_capture;
        while i < data.len() {
            let c = data[i];
            match self.esc {
                Esc::No => {
                    // plain bytes up to the next quote or backslash, in one go
                    let stop = string_stop(data, i);
                    if stop > i {
                        if !skipping {
                            self.push_slice(&data[i..stop], v);
                        }
                        i = stop;
                        if i == data.len() {
                            return i;
                        }
                    }
                    i += 1;
                    if data[i - 1] == b'"' {
                        self.end_string(v);
                        return i;
                    }
                    self.esc = Esc::Backslash;
                }
                Esc::Backslash => {
                    i += 1;
                    self.esc = Esc::No;
                    let out = match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'u' => {
                            self.esc = Esc::Unicode(4, 0);
                            continue;
                        }
                        other => other, // \" \\ \/ (and anything else, leniently)
                    };
                    self.push_char(u32::from(out), v);
                }
                Esc::Unicode(left, acc) => {
                    i += 1;
                    let Some(d) = (c as char).to_digit(16) else {
                        self.state = State::Stopped;
                        return data.len();
                    };
                    let acc = acc * 16 + d;
                    if left > 1 {
                        self.esc = Esc::Unicode(left - 1, acc);
                    } else {
                        self.esc = Esc::No;
                        self.push_unit(acc, v);
                    }
                }
            }
        }
        i
    }

    /// A `\uXXXX` code unit: pairs surrogates, replaces lone ones with U+FFFD.
    fn push_unit<V: Visitor>(&mut self, unit: u32, v: &mut V) {
        match (self.high_surrogate.take(), unit) {
            (Some(hi), 0xDC00..=0xDFFF) => {
                self.push_char(0x10000 + ((hi - 0xD800) << 10) + (unit - 0xDC00), v)
            }
            (prev, 0xD800..=0xDBFF) => {
                if prev.is_some() {
                    self.push_char(0xFFFD, v);
                }
                self.high_surrogate = Some(unit);
            }
            (prev, 0xDC00..=0xDFFF) => {
                if prev.is_some() {
                    self.push_char(0xFFFD, v);
                }
                self.push_char(0xFFFD, v);
            }
            (prev, _) => {
                if prev.is_some() {
                    self.push_char(0xFFFD, v);
                }
                self.push_char(unit, v);
            }
        }
    }

    fn push_char<V: Visitor>(&mut self, ch: u32, v: &mut V) {
        let ch = char::from_u32(ch).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            self.push_byte(b, v);
        }
    }

    /// Unescaped string bytes.
    fn push_slice<V: Visitor>(&mut self, bytes: &[u8], v: &mut V) {
        if self.high_surrogate.take().is_some() {
            self.push_char(0xFFFD, v);
        }
        if self.str_is_key {
            let room = KEY_MAX - self.key_len;
            let n = bytes.len().min(room);
            self.key[self.key_len..self.key_len + n].copy_from_slice(&bytes[..n]);
            self.key_len += n;
            if bytes.len() > room {
                self.key_overflow = true;
            }
        } else if self.str_capture {
            let mut rest = bytes;
            while !rest.is_empty() {
                let n = rest.len().min(STRING_MAX - self.captured.len());
                self.captured.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if self.captured.len() >= STRING_MAX {
                    self.hand_over(false, v);
                }
            }
        }
    }

    fn push_byte<V: Visitor>(&mut self, b: u8, v: &mut V) {
        if self.str_is_key {
            if self.key_len < KEY_MAX {
                self.key[self.key_len] = b;
                self.key_len += 1;
            } else {
                self.key_overflow = true;
            }
        } else if self.str_capture {
            self.captured.push(b);
            if self.captured.len() >= STRING_MAX {
                self.hand_over(false, v);
            }
        }
    }

    /// Hands the captured bytes to the visitor; when not `last`, keeps an incomplete UTF-8
    /// sequence at the end for the next piece.
    fn hand_over<V: Visitor>(&mut self, last: bool, v: &mut V) {
        let keep = if last {
            0
        } else {
            incomplete_utf8_tail(&self.captured)
        };
        let cut = self.captured.len() - keep;
        let text = lossy(&self.captured[..cut]);
        v.string(&self.path[..self.depth], &text, last);
        self.captured.drain(..cut);
    }

    fn end_string<V: Visitor>(&mut self, v: &mut V) {
        if self.high_surrogate.take().is_some() {
            self.push_char(0xFFFD, v);
        }
        if self.str_is_key {
            let name = if self.key_overflow {
                Name::Other
            } else {
                Name::of(&self.key[..self.key_len])
            };
            if self.depth > 0 {
                self.path[self.depth - 1] = name;
            }
            self.state = State::Colon;
        } else {
            if self.str_capture {
                self.hand_over(true, v);
            }
            self.end_value();
        }
    }
}

/// The length of a key that ends (with its closing quote) within the first [`KEY_MAX`] bytes
/// of `rest`, without an escape; `None` otherwise (the general path reads it).
#[inline]
fn short_key(rest: &[u8]) -> Option<usize> {
    let stop = string_stop(&rest[..rest.len().min(KEY_MAX + 1)], 0);
    (rest.get(stop) == Some(&b'"')).then_some(stop)
}

/// How many bytes at the end of `b` are the start of a UTF-8 sequence that is not complete.
fn incomplete_utf8_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let need = match c {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record {
        numbers: Vec<(Vec<Name>, u64)>,
        strings: Vec<(Vec<Name>, String)>,
        pending: String,
    }

    impl Visitor for Record {
        fn number(&mut self, path: &[Name], value: u64) {
            self.numbers.push((path.to_vec(), value));
        }
        fn wants_string(&self, path: &[Name]) -> bool {
            path.last() == Some(&Name::Content)
        }
        fn string(&mut self, path: &[Name], piece: &str, last: bool) {
            self.pending.push_str(piece);
            if last {
                let s = std::mem::take(&mut self.pending);
                self.strings.push((path.to_vec(), s));
            }
        }
    }

    fn scan_split(doc: &[u8], at: &[usize]) -> (Record, Scanner) {
        let mut s = Scanner::new();
        let mut r = Record::default();
        let mut start = 0;
        for &cut in at {
            s.feed(&doc[start..cut], &mut r);
            start = cut;
        }
        s.feed(&doc[start..], &mut r);
        s.finish(&mut r);
        (r, s)
    }

    const DOC: &str = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"h\u00e9llo \"w\" \ud83d\ude00 日本"}}],
        "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,
        "prompt_tokens_details":{"cached_tokens":4},"x":[1.5,-2,1e3,true,null,{"a":[]}]}}"#;

    #[test]
    fn numbers_and_strings_with_their_paths() {
        let (r, s) = scan_split(DOC.as_bytes(), &[]);
        assert!(s.is_done());
        use Name::*;
        assert_eq!(
            r.numbers,
            vec![
                (vec![Choices, Item, Index], 0),
                (vec![Usage, PromptTokens], 12),
                (vec![Usage, CompletionTokens], 3),
                (vec![Usage, TotalTokens], 15),
                (vec![Usage, PromptTokensDetails, CachedTokens], 4),
            ]
        );
        assert_eq!(
            r.strings,
            vec![(
                vec![Choices, Item, Message, Content],
                "héllo \"w\" 😀 日本".to_string()
            )]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let doc = DOC.as_bytes();
        let (whole, _) = scan_split(doc, &[]);
        for cut in 0..=doc.len() {
            let (r, s) = scan_split(doc, &[cut]);
            assert!(s.is_done(), "cut {cut}");
            assert_eq!(r.numbers, whole.numbers, "cut {cut}");
            assert_eq!(r.strings, whole.strings, "cut {cut}");
        }
        // and byte by byte
        let cuts: Vec<usize> = (1..doc.len()).collect();
        let (r, _) = scan_split(doc, &cuts);
        assert_eq!(r.numbers, whole.numbers);
        assert_eq!(r.strings, whole.strings);
    }

    #[test]
    fn not_json_stops_and_keeps_what_was_found() {
        let (r, s) = scan_split(b"[DONE]", &[]);
        assert!(s.is_stopped());
        assert!(r.numbers.is_empty());
        let (r, s) = scan_split(br#"{"usage":{"input_tokens":7}} trailing"#, &[]);
        assert!(s.is_stopped());
        assert_eq!(r.numbers.len(), 1);
        let (_, s) = scan_split(b"<html><body>502</body></html>", &[]);
        assert!(s.is_stopped());
        let (_, s) = scan_split(br#"{"a":1]"#, &[]);
        assert!(s.is_stopped());
    }

    #[test]
    fn nesting_past_the_limit_stops() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        let (_, s) = scan_split(deep.as_bytes(), &[]);
        assert!(s.is_stopped());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let (_, s) = scan_split(ok.as_bytes(), &[]);
        assert!(s.is_done());
    }

    #[test]
    fn a_number_at_the_very_end_needs_finish() {
        let mut s = Scanner::new();
        let mut r = Record::default();
        s.feed(b"42", &mut r);
        assert!(r.numbers.is_empty());
        s.finish(&mut r);
        assert_eq!(r.numbers, vec![(vec![], 42)]);
        assert!(s.is_done());
    }

    #[test]
    fn negative_numbers_are_not_reported_and_overflowing_ones_are_held_at_the_maximum() {
        let (r, _) = scan_split(br#"{"a":-1,"b":99999999999999999999999,"c":7}"#, &[]);
        assert_eq!(
            r.numbers,
            vec![(vec![Name::Other], u64::MAX), (vec![Name::Other], 7)]
        );
    }

    #[test]
    fn long_captured_strings_come_in_pieces_cut_at_char_boundaries() {
        let text = "é".repeat(STRING_MAX); // 2 bytes each
        let doc = format!(r#"{{"content":"{text}"}}"#);
        let mut s = Scanner::new();
        let mut pieces = Vec::new();
        struct Pieces<'a>(&'a mut Vec<String>);
        impl Visitor for Pieces<'_> {
            fn number(&mut self, _: &[Name], _: u64) {}
            fn wants_string(&self, _: &[Name]) -> bool {
                true
            }
            fn string(&mut self, _: &[Name], piece: &str, _: bool) {
                self.0.push(piece.to_string());
            }
        }
        // odd-sized feeds so that a cut falls inside a character
        for chunk in doc.as_bytes().chunks(333) {
            s.feed(chunk, &mut Pieces(&mut pieces));
        }
        assert!(pieces.len() >= 2);
        assert!(pieces.iter().all(|p| p.len() <= STRING_MAX));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn long_keys_are_other() {
        let key = "k".repeat(KEY_MAX + 5);
        let doc = format!(r#"{{"{key}":1,"usage":{{"input_tokens":2}}}}"#);
        let (r, _) = scan_split(doc.as_bytes(), &[]);
        assert_eq!(r.numbers[0], (vec![Name::Other], 1));
        assert_eq!(r.numbers[1], (vec![Name::Usage, Name::InputTokens], 2));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let (r, _) = scan_split(br#"{"content":"a\ud800b\udc00"}"#, &[]);
        assert_eq!(r.strings[0].1, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn incomplete_tail_lengths() {
        assert_eq!(incomplete_utf8_tail(b"ab"), 0);
        assert_eq!(incomplete_utf8_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(&"日".as_bytes()[..2]), 2);
        assert_eq!(incomplete_utf8_tail(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_utf8_tail(&"😀".as_bytes()[..1]), 1);
    }
}
