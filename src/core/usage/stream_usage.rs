//! Exact usage for OpenAI streams whose client did not ask for it.
//!
//! An OpenAI chat (or completions) stream reports usage only when the request says
//! `stream_options.include_usage: true`. When a client streams without it, the gateway adds it
//! to the request ([`request_usage`]), and takes the effects back out of the response
//! ([`UsageStripper`]): the usage-only chunk at the end (`"choices":[]` and a `usage` object)
//! is dropped, and the `"usage":null` member OpenAI adds to every other chunk is removed. The
//! client receives the stream it asked for, byte for byte; the gateway reads the usage first.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::event::EventFacts;
use super::scan::Kind;

/// Where a borrowed JSON value lies in the text it was parsed from.
fn span(text: &str, value: &RawValue) -> (usize, usize) {
    let start = value.get().as_ptr() as usize - text.as_ptr() as usize;
    (start, start + value.get().len())
}

/// A field's raw JSON when it is present, `null` included (`Option` would read `null` as
/// absent).
#[derive(Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| Present(Some(r)))
    }
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    stream_options: Present<'a>,
}

#[derive(Deserialize)]
struct StreamOptions<'a> {
    #[serde(borrow, default)]
    include_usage: Option<&'a RawValue>,
}

/// The request body with `stream_options.include_usage` set to true, or `None` when the
/// client already asked for usage (or the body is not an object the gateway can safely edit,
/// e.g. `stream_options` is `null` or not an object: it is then left as it is).
pub fn request_usage(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let top: Top<'_> = serde_json::from_str(text).ok()?;
    request_usage_at(text, top.stream_options.0.map(|so| span(text, so)))
}

/// [`request_usage`] of a body whose parse found `stream_options` at `stream_options` (a
/// byte range; `None` when absent): only that member is read.
pub fn request_usage_at(text: &str, stream_options: Option<(usize, usize)>) -> Option<Vec<u8>> {
    let body = text.as_bytes();
    let mut out = Vec::with_capacity(body.len() + 40);
    match stream_options {
        None => {
            let open = text.find('{')?;
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
            if !text[open + 1..].trim_start().starts_with('}') {
                out.push(b',');
            }
            out.extend_from_slice(&body[open + 1..]);
        }
        Some((so_start, so_end)) => {
            let so_text = text.get(so_start..so_end)?;
            if !so_text.starts_with('{') {
                return None; // null, or not an object
            }
            let opts: StreamOptions<'_> = serde_json::from_str(so_text).ok()?;
            match opts.include_usage {
                Some(v) if v.get() == "true" => return None,
                Some(v) => {
                    let (vs, ve) = span(so_text, v);
                    out.extend_from_slice(&body[..so_start + vs]);
                    out.extend_from_slice(b"true");
                    out.extend_from_slice(&body[so_start + ve..]);
                }
                None => {
                    if so_text.contains("\"include_usage\"") {
                        // include_usage: null
                        return None;
                    }
                    out.extend_from_slice(&body[..=so_start]);
                    out.extend_from_slice(br#""include_usage":true"#);
                    if !so_text[1..].trim_start().starts_with('}') {
                        out.push(b',');
                    }
                    out.extend_from_slice(&body[so_start + 1..]);
                }
            }
        }
    }
    Some(out)
}

/// Largest event held back while it is incomplete; a longer one is passed on as it is and
/// stripping stops for the rest of the response.
pub const EVENT_MAX: usize = 1 << 20;

/// What to do with one event of a stream whose usage the gateway asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    Keep,
    Drop,
    /// Remove bytes a..b of the event.
    Cut(usize, usize),
}

/// Rewrites an OpenAI stream the gateway asked usage for into the stream the client asked
/// for, one whole event at a time, from the facts the tracker read in it
/// ([`ResponseTracker::feed_event`](super::ResponseTracker::feed_event)).
#[derive(Debug, Default)]
pub struct UsageStripper {
    dropped_events: u32,
}

impl UsageStripper {
    /// Usage-only events dropped so far.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// What to do with `ev` (one whole event): the usage-only chunk (a `usage` object and an
    /// empty `choices`) is dropped, a top-level `"usage":null` member removed; events with
    /// several data lines, or whose data is not one JSON object, are kept as they are.
    pub fn rewrite(&mut self, ev: &[u8], facts: &EventFacts) -> Rewrite {
        if facts.data_lines != 1 || !facts.complete || !facts.object {
            return Rewrite::Keep;
        }
        match facts.usage {
            Some(Kind::Object) if facts.choices == Some(0) => {
                self.dropped_events += 1;
                Rewrite::Drop
            }
            Some(Kind::Null) => usage_null_span(ev, facts.line_break)
                .map_or(Rewrite::Keep, |(a, b)| Rewrite::Cut(a, b)),
            _ => Rewrite::Keep,
        }
    }
}

/// The end (exclusive, after the blank line) of the first complete event, looking from
/// `from`, which must be the start of a line; otherwise `Err` with the start of the line
/// still incomplete (where to look again when more bytes come). Lines end with LF, CRLF or CR.
/// With it, where the first line break at or after `from` is (the event's own first line
/// break when `from` is the event's start), so that readers of the event need not look again.
pub(crate) fn event_bounds(buf: &[u8], from: usize) -> Result<(usize, usize), usize> {
    let mut first = None;
    let mut i = from;
    let mut line_start = from;
    while i < buf.len() {
        if buf[i] != b'\n' && buf[i] != b'\r' {
            match memchr::memchr2(b'\n', b'\r', &buf[i..]) {
                Some(p) => i += p,
                None => return Err(line_start),
            }
        }
        let c = buf[i];
        let first = *first.get_or_insert(i);
        let after = if c == b'\r' && buf.get(i + 1) == Some(&b'\n') {
            i + 2
        } else if c == b'\r' && i + 1 == buf.len() {
            return Err(line_start); // a CR at the end: an LF may follow
        } else {
            i + 1
        };
        if i == line_start {
            return Ok((after, first)); // a blank line
        }
        i = after;
        line_start = after;
    }
    Err(line_start)
}

/// OpenAI's member in every chunk but the last when usage was asked for.
const USAGE_NULL: &[u8] = b",\"usage\":null}";

/// The bytes of `ev` (one data line whose JSON has a top-level `"usage":null`) to remove;
/// `line_break` is where the event's first line break is, when known.
fn usage_null_span(ev: &[u8], line_break: Option<usize>) -> Option<(usize, usize)> {
    // OpenAI's own layout: `data: {...,"usage":null}` and a blank line
    if let Some(json) = ev.strip_prefix(b"data: ") {
        let body = json.trim_ascii_end();
        let one_line = match line_break {
            Some(at) => at >= 6 + body.len(),
            None => memchr::memchr2(b'\n', b'\r', body).is_none(),
        };
        if body.ends_with(USAGE_NULL) && one_line {
            let start = 6 + body.len() - USAGE_NULL.len();
            // keep the closing brace
            return Some((start, start + USAGE_NULL.len() - 1));
        }
    }
    let text = std::str::from_utf8(ev).ok()?;
    let mut offset = 0;
    for line in text.split_inclusive(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let start = offset + (line.len() - rest.len());
            let json = rest.trim_end_matches(['\n', '\r']);
            let (a, b) = member_span(json, "usage")?;
            return Some((start + a, start + b));
        }
        offset += line.len();
    }
    None
}

/// The bytes to remove to delete the top-level member `key` of a JSON object (with the comma
/// that separates it from its neighbour and the whitespace around that comma).
fn member_span(json: &str, key: &str) -> Option<(usize, usize)> {
    let b = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // for each top-level member: (start of its key, end of its value)
    let mut members: Vec<(usize, usize, bool)> = Vec::new();
    let mut key_start = None;
    let mut is_target = false;
    let mut expect_key = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let s = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    key_start = Some(s);
                    is_target = json.get(s + 1..i) == Some(key);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    expect_key = true;
                }
            }
            b'}' | b']' => {
                if depth == 1 {
                    if let Some(k) = key_start.take() {
                        members.push((k, value_end(b, i), is_target));
                    }
                }
                depth = depth.checked_sub(1)?;
            }
            b',' if depth == 1 => {
                if let Some(k) = key_start.take() {
                    members.push((k, value_end(b, i), is_target));
                }
                expect_key = true;
            }
            _ => {}
        }
        i += 1;
    }
    let at = members.iter().position(|m| m.2)?;
    let (k, v, _) = members[at];
    if at > 0 {
        // from the end of the previous value: `, "usage":null`
        Some((members[at - 1].1, v))
    } else if let Some(next) = members.get(1) {
        // the first member: up to the next key
        Some((k, next.0))
    } else {
        Some((k, v))
    }
}

/// The end of a value that is followed (after optional whitespace) by the delimiter at `at`.
fn value_end(b: &[u8], at: usize) -> usize {
    let mut e = at;
    while e > 0 && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    e
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_bounds_say_where_the_first_line_breaks() {
        for (buf, from, want) in [
            (&b"data: {}\n\nrest"[..], 0, Ok((10, 8))),
            (b"event: x\ndata: {}\n\n", 0, Ok((19, 8))),
            (b"data: {}\r\n\r\n", 0, Ok((12, 8))),
            (b"data: {}\r\rx", 0, Ok((10, 8))),
            (b"\n", 0, Ok((1, 0))),
            (b"data: {}\n", 0, Err(9)),
            (b"data: {}\r", 0, Err(0)),
            (b"xx\ndata: 1\n\n", 3, Ok((12, 10))),
        ] {
            assert_eq!(
                event_bounds(buf, from),
                want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn the_usage_null_cut_is_the_same_with_the_line_break_known() {
        for ev in [
            &b"data: {\"a\":1,\"usage\":null}\n\n"[..],
            b"data: {\"a\":1,\"usage\":null}\r\n\r\n",
            b"data: {\"a\":1,\n\"usage\":null}\n\n",
            b"event: c\ndata: {\"a\":1,\"usage\":null}\n\n",
            b"data: {\"usage\":null,\"a\":1}\n\n",
        ] {
            let (_, line_break) = event_bounds(ev, 0).unwrap();
            assert_eq!(
                usage_null_span(ev, Some(line_break)),
                usage_null_span(ev, None),
                "{:?}",
                String::from_utf8_lossy(ev)
            );
        }
    }

    use super::*;

    fn inject(body: &str) -> Option<String> {
        request_usage(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn adds_include_usage_where_it_fits() {
        assert_eq!(
            inject(r#"{"model":"m","stream":true}"#).as_deref(),
            Some(r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#)
        );
        assert_eq!(
            inject(r#" { } "#).as_deref(),
            Some(r#" {"stream_options":{"include_usage":true} } "#)
        );
        assert_eq!(
            inject(r#"{"stream_options":{"include_obfuscation":false},"a":1}"#).as_deref(),
            Some(r#"{"stream_options":{"include_usage":true,"include_obfuscation":false},"a":1}"#)
        );
        assert_eq!(
            inject(r#"{"stream_options":{ },"a":1}"#).as_deref(),
            Some(r#"{"stream_options":{"include_usage":true },"a":1}"#)
        );
        assert_eq!(
            inject(r#"{"stream_options": {"include_usage" : false}}"#).as_deref(),
            Some(r#"{"stream_options": {"include_usage" : true}}"#)
        );
        // every result is valid JSON that says true
        for body in [
            r#"{"model":"m","stream":true}"#,
            r#"{"stream_options":{"include_obfuscation":false},"a":1}"#,
            r#"{"stream_options": {"include_usage" : false}}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(&inject(body).unwrap()).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true);
        }
    }

    #[test]
    fn the_spans_of_the_request_parse_give_the_same_body() {
        for body in [
            r#"{"model":"m","stream":true}"#,
            r#"{"messages":[{"content":"\"stream_options\":null"}],"stream":true}"#,
            r#"{"stream_options":{"include_obfuscation":false},"a":1}"#,
            r#"{"stream_options": {"include_usage" : false}}"#,
            r#"{"stream_options":{"include_usage":true}}"#,
            r#"{"stream_options":null}"#,
            r#"{"stream_options":{"include_usage":null}}"#,
            r#" { } "#,
        ] {
            let spans = crate::core::request::parse_request(body.as_bytes(), true)
                .unwrap()
                .spans;
            assert_eq!(
                request_usage_at(body, spans.stream_options),
                request_usage(body.as_bytes()),
                "{body}"
            );
        }
        // a key inside a string is not the member
        assert!(inject(r#"{"messages":[{"content":"\"stream_options\""}]}"#).is_some());
    }

    #[test]
    fn leaves_alone_what_it_must_not_touch() {
        assert_eq!(inject(r#"{"stream_options":{"include_usage":true}}"#), None);
        assert_eq!(inject(r#"{"stream_options":null}"#), None);
        assert_eq!(inject(r#"{"stream_options":"x"}"#), None);
        assert_eq!(inject(r#"{"stream_options":{"include_usage":null}}"#), None);
        assert_eq!(inject("[]"), None);
        assert_eq!(inject("{"), None);
    }
}
