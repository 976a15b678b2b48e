//! The scanner's fast path for a document that is whole in one slice (the data of one event,
//! as the stream rewriter hands it over): recursive descent with the state in locals instead
//! of a resumable state machine, strings found eight bytes at a time and read in place. It
//! reports exactly what [`Scanner`](super::Scanner) reports, to the same [`Visitor`], in the
//! same order, and stops where it stops (a unit test compares the two on every prefix of a
//! corpus of documents).

use super::scan::{string_stop, Kind, Name, Visitor, KEY_MAX, MAX_DEPTH, SHAPE_DEPTH};
use crate::core::json_bytes::{lossy, short_string_end};

/// Where the text strings of a document are (see [`Visitor::is_text`]), and whether a number
/// the visitor keeps was read: what a memo of the document's layout needs.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Text strings captured.
    pub texts: u32,
    /// The first one: its contents `start..end` (between the quotes) and its path.
    pub start: usize,
    pub end: usize,
    pub path: [Name; MAX_DEPTH],
    pub depth: usize,
    /// A number the visitor keeps was read.
    pub kept_number: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            texts: 0,
            start: 0,
            end: 0,
            path: [Name::Other; MAX_DEPTH],
            depth: 0,
            kept_number: false,
        }
    }
}

/// How a whole-document scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    /// One complete value, then only whitespace.
    Done,
    /// Not JSON (or nested deeper than `MAX_DEPTH`, or cut short): what was reported before
    /// stays reported.
    Stopped,
}

struct Walk<'d, 'v, V> {
    d: &'d [u8],
    i: usize,
    path: [Name; MAX_DEPTH],
    depth: usize,
    v: &'v mut V,
    layout: Layout,
}

/// Scans `doc`, one whole JSON document.
pub fn scan_whole<V: Visitor>(doc: &[u8], v: &mut V) -> (Whole, Layout) {
    let mut w = Walk {
        d: doc,
        i: 0,
        path: [Name::Other; MAX_DEPTH],
        depth: 0,
        v,
        layout: Layout::default(),
    };
    if w.value().is_none() {
        return (Whole::Stopped, w.layout);
    }
    w.ws();
    let end = if w.i == doc.len() {
        Whole::Done
    } else {
        Whole::Stopped
    };
    (end, w.layout)
}

impl<V: Visitor> Walk<'_, '_, V> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.d.get(self.i) {
            if !c.is_ascii_whitespace() {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn shape(&mut self, kind: Kind) {
        if self.depth <= SHAPE_DEPTH {
            self.v.value(&self.path[..self.depth], kind);
        }
    }

    /// A value at the current path, after optional whitespace; `None` stops the scan.
    fn value(&mut self) -> Option<()> {
        self.ws();
        let c = *self.d.get(self.i)?;
        match c {
            b'{' => {
                self.shape(Kind::Object);
                self.i += 1;
                self.object()
            }
            b'[' => {
                self.shape(Kind::Array);
                self.i += 1;
                self.array()
            }
            b'"' => {
                self.shape(Kind::String);
                self.i += 1;
                self.string_value()
            }
            b'-' | b'0'..=b'9' => {
                self.shape(Kind::Number);
                self.number()
            }
            b't' | b'f' | b'n' => {
                self.shape(if c == b'n' { Kind::Null } else { Kind::Literal });
                self.i += 1;
                while self.d.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
                    self.i += 1;
                }
                // the incremental scanner needs the byte after a literal to end it
                (self.i < self.d.len()).then_some(())
            }
            _ => None,
        }
    }

    fn open(&mut self, name: Name) -> Option<()> {
        if self.depth == MAX_DEPTH {
            return None;
        }
        self.path[self.depth] = name;
        self.depth += 1;
        Some(())
    }

    fn object(&mut self) -> Option<()> {
        self.open(Name::Other)?;
        self.ws();
        if self.d.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.ws();
            if self.d.get(self.i) != Some(&b'"') {
                return None;
            }
            self.i += 1;
            let name = self.key()?;
            self.path[self.depth - 1] = name;
            self.ws();
            if self.d.get(self.i) != Some(&b':') {
                return None;
            }
            self.i += 1;
            self.value()?;
            self.ws();
            match self.d.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self) -> Option<()> {
        self.open(Name::Item)?;
        self.ws();
        if self.d.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.d.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The end of the string starting at `self.i` (the index of its closing quote), and
    /// whether it has escapes.
    #[inline(always)]
    fn string_end(&self) -> Option<(usize, bool)> {
        if let Some(end) = short_string_end(self.d, self.i) {
            return Some((end, false));
        }
        let mut at = self.i;
        let mut escaped = false;
        loop {
            let stop = string_stop(self.d, at);
            match self.d.get(stop)? {
                b'"' => return Some((stop, escaped)),
                _ => {
                    escaped = true;
                    if self.d.get(stop + 1) == Some(&b'u') {
                        let hex = self.d.get(stop + 2..stop + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                    }
                    at = stop + 2;
                }
            }
        }
    }

    #[inline(always)]
    fn key(&mut self) -> Option<Name> {
        let (end, escaped) = self.string_end()?;
        let raw = &self.d[self.i..end];
        self.i = end + 1;
        if !escaped {
            return Some(if raw.len() > KEY_MAX {
                Name::Other
            } else {
                Name::of(raw)
            });
        }
        let key = unescape(raw)?;
        Some(if key.len() > KEY_MAX {
            Name::Other
        } else {
            Name::of(key.as_bytes())
        })
    }

    fn string_value(&mut self) -> Option<()> {
        let (end, escaped) = self.string_end()?;
        let raw = &self.d[self.i..end];
        self.i = end + 1;
        let path = &self.path[..self.depth];
        if self.v.wants_string(path) {
            if self.v.is_text(path) {
                let l = &mut self.layout;
                if l.texts == 0 {
                    l.start = end - raw.len();
                    l.end = end;
                    l.path = self.path;
                    l.depth = self.depth;
                }
                l.texts += 1;
            }
            if escaped {
                let text = unescape(raw)?;
                self.v.string(path, &text, true);
            } else {
                self.v.string(path, &lossy(raw), true);
            }
        }
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let mut ok = self.d[self.i] != b'-';
        let mut n: u64 = 0;
        while let Some(&c) = self.d.get(self.i) {
            match c {
                b'0'..=b'9' => n = n.saturating_mul(10).saturating_add(u64::from(c - b'0')),
                b'.' | b'e' | b'E' | b'+' | b'-' => ok = false,
                _ => break,
            }
            self.i += 1;
        }
        if ok {
            let path = &self.path[..self.depth];
            self.layout.kept_number |= self.v.keeps_number(path);
            self.v.number(path, n);
        }
        if self.i == self.d.len() && self.depth > 0 {
            // cut short inside a container
            return None;
        }
        Some(())
    }
}

/// The text of a JSON string's contents, escapes resolved as the incremental scanner does
/// (lone surrogates become U+FFFD, unknown escapes stand for themselves); `None` for a
/// `\u` escape without four hex digits.
pub(super) fn unescape(raw: &[u8]) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut high: Option<u32> = None;
    let mut i = 0;
    let push = |out: &mut Vec<u8>, ch: u32| {
        let ch = char::from_u32(ch).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    };
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            if high.take().is_some() {
                push(&mut out, 0xFFFD);
            }
            out.push(c);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1)?;
        i += 2;
        let ch = match e {
            b'n' => u32::from(b'\n'),
            b't' => u32::from(b'\t'),
            b'r' => u32::from(b'\r'),
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let hex = raw.get(i..i + 4)?;
                let mut unit = 0u32;
                for &h in hex {
                    unit = unit * 16 + (h as char).to_digit(16)?;
                }
                i += 4;
                match (high.take(), unit) {
                    (Some(hi), 0xDC00..=0xDFFF) => {
                        push(&mut out, 0x10000 + ((hi - 0xD800) << 10) + (unit - 0xDC00));
                    }
                    (prev, 0xD800..=0xDBFF) => {
                        if prev.is_some() {
                            push(&mut out, 0xFFFD);
                        }
                        high = Some(unit);
                    }
                    (prev, 0xDC00..=0xDFFF) => {
                        if prev.is_some() {
                            push(&mut out, 0xFFFD);
                        }
                        push(&mut out, 0xFFFD);
                    }
                    (prev, _) => {
                        if prev.is_some() {
                            push(&mut out, 0xFFFD);
                        }
                        push(&mut out, unit);
                    }
                }
                continue;
            }
            other => u32::from(other),
        };
        push(&mut out, ch);
    }
    if high.is_some() {
        push(&mut out, 0xFFFD);
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::scan::Scanner;
    use super::*;

    /// Everything a visitor is told, in order.
    #[derive(Default, Debug, PartialEq)]
    struct Record {
        seen: Vec<String>,
        pending: String,
    }

    impl Visitor for Record {
        fn value(&mut self, path: &[Name], kind: Kind) {
            self.seen.push(format!("value {path:?} {kind:?}"));
        }
        fn number(&mut self, path: &[Name], value: u64) {
            self.seen.push(format!("number {path:?} {value}"));
        }
        fn wants_string(&self, path: &[Name]) -> bool {
            !matches!(path.last(), Some(Name::Other))
        }
        fn string(&mut self, path: &[Name], piece: &str, last: bool) {
            self.pending.push_str(piece);
            if last {
                let s = std::mem::take(&mut self.pending);
                self.seen.push(format!("string {path:?} {s:?}"));
            }
        }
    }

    const CORPUS: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\u00e9llo \"w\" \ud83d\ude00 \n日本"}}"#,
        r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":5,"output_tokens":1}}}"#,
        r#"{"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
        r#"{"a":[1.5,-2,1e3,true,false,null,{"b":[]},[[]]],"us\u0061ge":{"total_tokens":18446744073709551616}}"#,
        r#"  {"x" : { "y" : [ 1 , 2 ] } , "text" : "spaced" }  "#,
        r#"{"text":"\ud800 lone","content":"\udc00","bad":"ok\/\b\f\r\t"}"#,
        r#"[DONE]"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"[1,]"#,
        r#"{"content":"x"} trailing"#,
        r#"42"#,
        r#""top""#,
        r#"{"text":"bad \u12G4 escape"}"#,
        r#"{"k":"a very long key value past thirty-two bytes of text, read as a string"}"#,
        r#"{"a_key_that_is_longer_than_thirty_two_bytes_in_all":{"text":"t"}}"#,
    ];

    fn incremental(doc: &[u8]) -> (Record, bool) {
        let mut s = Scanner::new();
        let mut r = Record::default();
        s.feed(doc, &mut r);
        s.finish(&mut r);
        r.pending.clear();
        (r, s.is_done())
    }

    fn whole(doc: &[u8]) -> (Record, bool) {
        let mut r = Record::default();
        let done = scan_whole(doc, &mut r).0 == Whole::Done;
        r.pending.clear();
        (r, done)
    }

    #[test]
    fn reports_what_the_incremental_scanner_reports() {
        for doc in CORPUS {
            let b = doc.as_bytes();
            assert_eq!(whole(b), incremental(b), "{doc}");
            // deeper than MAX_DEPTH
            let deep = format!("{}{doc}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
            assert_eq!(
                whole(deep.as_bytes()),
                incremental(deep.as_bytes()),
                "deep {doc}"
            );
        }
    }

    #[test]
    fn every_prefix_reports_the_same() {
        for doc in CORPUS {
            let b = doc.as_bytes();
            for end in 0..b.len() {
                let (w, w_done) = whole(&b[..end]);
                let (i, i_done) = incremental(&b[..end]);
                assert_eq!(w.seen, i.seen, "{doc} cut at {end}");
                assert_eq!(w_done, i_done, "{doc} cut at {end}");
            }
        }
    }
}
