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

/// Where a borrowed JSON value lies in the text it was parsed from.
fn span(text: &str, value: &RawValue) -> (usize, usize) {
    let start = value.get().as_ptr() as usize - text.as_ptr() as usize;
    (start, start + value.get().len())
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
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
    let mut out = Vec::with_capacity(body.len() + 40);
    match top.stream_options {
        None => {
            if text.contains("\"stream_options\"") {
                return None; // present but null
            }
            let open = text.find('{')?;
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
            if !text[open + 1..].trim_start().starts_with('}') {
                out.push(b',');
            }
            out.extend_from_slice(&body[open + 1..]);
        }
        Some(so) => {
            let (so_start, so_end) = span(text, so);
            let so_text = &text[so_start..so_end];
            if !so_text.starts_with('{') {
                return None;
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

/// Rewrites an OpenAI stream the gateway asked usage for into the stream the client asked
/// for. Complete events go out at once; only an event still arriving is held back.
#[derive(Debug, Default)]
pub struct UsageStripper {
    pending: Vec<u8>,
    /// Where to continue looking for the end of the pending event.
    scanned: usize,
    /// Stopped after an oversized event: everything passes unchanged.
    off: bool,
    dropped_events: u32,
}

impl UsageStripper {
    /// Usage-only events dropped so far.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// The next bytes of the upstream response; appends what the client gets to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.off {
            out.extend_from_slice(data);
            return;
        }
        if self.pending.is_empty() {
            // the usual case: complete events straight from `data`, only a tail is kept
            let (start, resume) = self.events(data, 0, out);
            self.pending.extend_from_slice(&data[start..]);
            self.scanned = resume - start;
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let (start, resume) = self.events(&pending, self.scanned, out);
            self.pending = pending;
            self.pending.drain(..start);
            self.scanned = resume - start;
        }
        if self.pending.len() > EVENT_MAX {
            self.off = true;
            self.scanned = 0;
            out.append(&mut self.pending);
        }
    }

    /// Rewrites the complete events of `buf` (looking for their ends from `from`, a line
    /// start); returns where the incomplete rest starts and where to look again.
    fn events(&mut self, buf: &[u8], from: usize, out: &mut Vec<u8>) -> (usize, usize) {
        let mut start = 0;
        let mut scanned = from;
        loop {
            match event_end(buf, scanned) {
                Ok(end) => {
                    let ev = &buf[start..end];
                    match rewrite_event(ev) {
                        Rewrite::Keep => out.extend_from_slice(ev),
                        Rewrite::Drop => self.dropped_events += 1,
                        Rewrite::Cut(a, b) => {
                            out.extend_from_slice(&ev[..a]);
                            out.extend_from_slice(&ev[b..]);
                        }
                    }
                    start = end;
                    scanned = end;
                }
                Err(resume) => return (start, resume),
            }
        }
    }

    /// The response ended: whatever is held goes out as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
        self.scanned = 0;
    }
}

/// The end (exclusive, after the blank line) of the first complete event, looking from
/// `from`, which must be the start of a line; otherwise `Err` with the start of the line
/// still incomplete (where to look again when more bytes come). Lines end with LF, CRLF or CR.
pub(crate) fn event_end(buf: &[u8], from: usize) -> Result<usize, usize> {
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
        if c == b'\n' || c == b'\r' {
            let after = if c == b'\r' && buf.get(i + 1) == Some(&b'\n') {
                i + 2
            } else if c == b'\r' && i + 1 == buf.len() {
                return Err(line_start); // a CR at the end: an LF may follow
            } else {
                i + 1
            };
            if i == line_start {
                return Ok(after); // a blank line
            }
            i = after;
            line_start = after;
        } else {
            i += 1;
        }
    }
    Err(line_start)
}

enum Rewrite {
    Keep,
    Drop,
    /// Remove bytes a..b of the event.
    Cut(usize, usize),
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// OpenAI's member in every chunk but the last when usage was asked for.
const USAGE_NULL: &[u8] = b",\"usage\":null}";

/// What to do with one event: an event with a single `data:` line holding a chunk.
fn rewrite_event(ev: &[u8]) -> Rewrite {
    // fast paths for OpenAI's own layout: `data: {...,"usage":null}` and a blank line
    if let Some(json) = ev.strip_prefix(b"data: ") {
        let body = json.trim_ascii_end();
        let single_line = memchr::memchr2(b'\n', b'\r', body).is_none();
        if single_line && body.ends_with(USAGE_NULL) {
            let start = 6 + body.len() - USAGE_NULL.len();
            // keep the closing brace
            return Rewrite::Cut(start, start + USAGE_NULL.len() - 1);
        }
        if single_line && memchr::memmem::find(body, b"\"usage\"").is_none() {
            return Rewrite::Keep;
        }
    }
    rewrite_event_slow(ev)
}

/// The general case: parse the event's data.
fn rewrite_event_slow(ev: &[u8]) -> Rewrite {
    let Ok(text) = std::str::from_utf8(ev) else {
        return Rewrite::Keep;
    };
    let mut data = None;
    let mut offset = 0;
    for line in text.split_inclusive(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("data:") {
            if data.is_some() {
                return Rewrite::Keep; // multi-line data: leave it alone
            }
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let start = offset + (line.len() - rest.len());
            let value = rest.trim_end_matches(['\n', '\r']);
            data = Some((start, value));
        }
        offset += line.len();
    }
    let Some((data_start, json)) = data else {
        return Rewrite::Keep;
    };
    let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(json) else {
        return Rewrite::Keep;
    };
    match chunk.usage {
        Some(u) if u.get().starts_with('{') => {
            if chunk.choices.is_some_and(|c| c.is_empty()) {
                Rewrite::Drop
            } else {
                Rewrite::Keep // usage on a chunk that also carries choices: keep it
            }
        }
        None if json.contains("\"usage\"") => match member_span(json, "usage") {
            Some((a, b)) => Rewrite::Cut(data_start + a, data_start + b),
            None => Rewrite::Keep,
        },
        _ => Rewrite::Keep,
    }
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
    fn leaves_alone_what_it_must_not_touch() {
        assert_eq!(inject(r#"{"stream_options":{"include_usage":true}}"#), None);
        assert_eq!(inject(r#"{"stream_options":null}"#), None);
        assert_eq!(inject(r#"{"stream_options":"x"}"#), None);
        assert_eq!(inject(r#"{"stream_options":{"include_usage":null}}"#), None);
        assert_eq!(inject("[]"), None);
        assert_eq!(inject("{"), None);
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

    fn strip(stream: &str, cuts: &[usize]) -> String {
        let mut s = UsageStripper::default();
        let mut out = Vec::new();
        let b = stream.as_bytes();
        let mut start = 0;
        for &c in cuts {
            s.feed(&b[start..c], &mut out);
            start = c;
        }
        s.feed(&b[start..], &mut out);
        s.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

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
    fn complete_events_go_out_at_once() {
        let mut s = UsageStripper::default();
        let mut out = Vec::new();
        let first_end = WITH_USAGE.find("\n\n").unwrap() + 2;
        s.feed(&WITH_USAGE.as_bytes()[..first_end + 10], &mut out);
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
    }

    #[test]
    fn an_unfinished_event_is_passed_on_at_the_end() {
        let partial = "data: {\"id\":\"c\",\"usage\":null}";
        assert_eq!(strip(partial, &[]), partial);
    }

    #[test]
    fn an_oversized_event_turns_stripping_off() {
        let big = format!("data: {{\"x\":\"{}\"", "a".repeat(EVENT_MAX + 10));
        let mut s = UsageStripper::default();
        let mut out = Vec::new();
        s.feed(big.as_bytes(), &mut out);
        assert_eq!(out.len(), big.len());
        s.feed(b",\"usage\":null}\n\n", &mut out);
        assert!(out.ends_with(b",\"usage\":null}\n\n"));
    }
}
