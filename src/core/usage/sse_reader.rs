//! The tracker's reading of an event stream: cut into whole events (an event still arriving
//! is held, at most [`HELD_MAX`] bytes), and each event read in one pass: the usual event (one
//! `data:` line and a blank line) by its layout memo or the whole-document scan, any other by
//! the line reader. Past an event larger than `HELD_MAX` the rest of the stream goes through
//! the line reader as it comes (it holds nothing but a few bytes of state).

use super::event_memo::EventMemo;
use super::scan::{Scanner, Visitor};
use super::scan_whole::{scan_whole, Whole};
use super::sse::SseLines;
use super::stream_usage::event_bounds;
use super::Sink;

/// Largest incomplete event held for a whole-event read.
pub const HELD_MAX: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(super) struct SseReader {
    lines: SseLines,
    memo: EventMemo,
    /// An event still arriving.
    pending: Vec<u8>,
    /// Where to look again for the end of the pending event (a line start).
    scanned: usize,
    /// An event outgrew `HELD_MAX`: the line reader reads the rest as it comes.
    streaming: bool,
}

impl SseReader {
    /// Events with data seen so far.
    pub(super) fn events(&self) -> u64 {
        self.lines.events()
    }

    /// Bytes held for an event still arriving.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.pending.len()
    }

    /// What is memoised no longer fits what is wanted.
    pub(super) fn forget_layout(&mut self) {
        self.memo.clear();
    }

    /// The next bytes of the stream, cut anywhere.
    pub(super) fn feed(&mut self, data: &[u8], scanner: &mut Scanner, sink: &mut Sink) {
        if self.streaming {
            self.lines.feed(data, scanner, sink);
            return;
        }
        if self.pending.is_empty() {
            let mut start = 0;
            while let Ok((end, line_break)) = event_bounds(data, start) {
                self.event(&data[start..end], Some(line_break - start), scanner, sink);
                start = end;
            }
            self.hold(&data[start..], scanner, sink);
            return;
        }
        self.pending.extend_from_slice(data);
        let pending = std::mem::take(&mut self.pending);
        let mut at = 0;
        let mut from = self.scanned;
        while let Ok((end, line_break)) = event_bounds(&pending, from) {
            // the first line break is the event's when the search began at its start
            let line_break = (from == at).then(|| line_break - at);
            self.event(&pending[at..end], line_break, scanner, sink);
            at = end;
            from = end;
        }
        self.scanned = from - at;
        self.pending = pending;
        self.pending.drain(..at);
        if self.pending.len() > HELD_MAX {
            self.stream_from_here(scanner, sink);
        }
    }

    /// Holds the incomplete end of a piece.
    fn hold(&mut self, rest: &[u8], scanner: &mut Scanner, sink: &mut Sink) {
        if rest.is_empty() {
            return;
        }
        self.pending.reserve(rest.len().max(1024));
        self.pending.extend_from_slice(rest);
        self.scanned = 0;
        if self.pending.len() > HELD_MAX {
            self.stream_from_here(scanner, sink);
        }
    }

    fn stream_from_here(&mut self, scanner: &mut Scanner, sink: &mut Sink) {
        self.streaming = true;
        let pending = std::mem::take(&mut self.pending);
        self.lines.feed(&pending, scanner, sink);
    }

    /// One whole event (it ends with its blank line), read in one pass.
    /// One whole event; `line_break` is where its first line break is, when known.
    pub(super) fn event(
        &mut self,
        ev: &[u8],
        line_break: Option<usize>,
        scanner: &mut Scanner,
        sink: &mut Sink,
    ) {
        if !self.pending.is_empty() || self.streaming {
            // bytes before it are still unread: keep the order
            self.feed(ev, scanner, sink);
            return;
        }
        let Some((json, cr_end)) =
            single_data_line(ev, line_break).filter(|_| self.lines.at_event_start())
        else {
            self.lines.feed(ev, scanner, sink);
            return;
        };
        // the usual event, `data: {...}` and a blank line: its text if it has the layout of
        // the one before, otherwise the whole-document scan
        if let Some(text) = self.memo.text_of(json) {
            sink.facts.copy_layout_from(self.memo.facts());
            sink.string(self.memo.path(), &text, true);
            sink.event_end(1, self.memo.complete());
        } else {
            let (end, layout) = scan_whole(json, sink);
            let complete = end == Whole::Done;
            sink.event_end(1, complete);
            self.memo.remember(json, &layout, &sink.facts, complete);
        }
        self.lines.skip_event(cr_end);
    }

    /// The stream ended: what is held is read as it is, and an open event ends.
    pub(super) fn finish(&mut self, scanner: &mut Scanner, sink: &mut Sink) {
        let pending = std::mem::take(&mut self.pending);
        self.lines.feed(&pending, scanner, sink);
        self.lines.finish(scanner, sink);
    }
}

/// The data of an event that is one `data:` line and a blank line (LF, CRLF or CR line
/// ends), and whether it ends with a CR.
fn single_data_line(ev: &[u8], line_break: Option<usize>) -> Option<(&[u8], bool)> {
    let rest = ev.strip_prefix(b"data:")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = match line_break {
        Some(at) => at.checked_sub(ev.len() - rest.len())?,
        None => memchr::memchr2(b'\n', b'\r', rest)?,
    };
    match &rest[end..] {
        b"\n\n" | b"\r\n\r\n" => Some((&rest[..end], false)),
        b"\r\r" => Some((&rest[..end], true)),
        _ => None,
    }
}
