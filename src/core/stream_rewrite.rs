//! Rewriting an event stream on its way to the client, in one pass: the stream is cut into
//! whole events, each event is read once by the response tracker (its usage, its text and
//! the facts of [`EventFacts`]), and from those facts the stages decide what the client gets:
//! the include_usage strip ([`UsageStripper`]: the client gets the stream it asked for) and
//! the output cap ([`StreamCap`]: the stream ends cleanly at the cap). The tracker reads the
//! provider's bytes, all of them, before either (usage is the provider's).
//!
//! Events whole in one piece of input are read where they are; only an event still arriving
//! is copied, and held at most [`EVENT_MAX`] bytes: past that the strip stops (the rest
//! passes unchanged) or the cap ends the stream (it cannot count what it cannot hold).

use crate::core::policy::stream_cap::StreamCap;
use crate::core::usage::stream_usage::event_bounds;
use crate::core::usage::{FactsWanted, ResponseTracker, Rewrite, UsageStripper};

pub use crate::core::usage::stream_usage::EVENT_MAX;

/// Room made at first for an event still arriving.
const PENDING_START: usize = 4096;

/// See the module documentation.
#[derive(Debug)]
pub struct StreamRewriter {
    stripper: Option<UsageStripper>,
    cap: Option<StreamCap>,
    /// An event still arriving.
    pending: Vec<u8>,
    /// Where to look again for the end of the pending event (a line start).
    scanned: usize,
    /// Rewriting stopped after an oversized event (strip only): the rest passes unchanged.
    off: bool,
}

impl StreamRewriter {
    /// A rewriter with the strip, the cap or both; the tracker is told which facts to read.
    pub fn new(
        strip: bool,
        cap: Option<StreamCap>,
        tracker: &mut ResponseTracker,
    ) -> StreamRewriter {
        tracker.want_facts(FactsWanted {
            api: cap.as_ref().map(StreamCap::api),
            head: cap.as_ref().is_some_and(StreamCap::wants_head),
        });
        StreamRewriter {
            stripper: strip.then(UsageStripper::default),
            cap,
            pending: Vec::new(),
            scanned: 0,
            off: false,
        }
    }

    /// Whether the cap ended the stream (what comes after is only read, not sent).
    pub fn ended(&self) -> bool {
        self.cap.as_ref().is_some_and(StreamCap::ended)
    }

    pub fn cap(&self) -> Option<&StreamCap> {
        self.cap.as_ref()
    }

    pub fn stripper(&self) -> Option<&UsageStripper> {
        self.stripper.as_ref()
    }

    /// The next bytes of the provider's stream; what the client gets is appended to `out`.
    pub fn feed(&mut self, data: &[u8], tracker: &mut ResponseTracker, out: &mut Vec<u8>) {
        if self.off {
            tracker.feed(data);
            out.extend_from_slice(data);
            return;
        }
        if self.ended() {
            tracker.feed(data);
            return;
        }
        if self.pending.is_empty() {
            let mut start = 0;
            // the usual case: whole events in the piece, read where they are
            while let Ok((end, line_break)) = event_bounds(data, start) {
                if !self.event(&data[start..end], Some(line_break - start), tracker, out) {
                    tracker.feed(&data[end..]);
                    return;
                }
                start = end;
            }
            if start < data.len() {
                // room for a usual event at once
                self.pending
                    .reserve((data.len() - start).max(PENDING_START));
                self.pending.extend_from_slice(&data[start..]);
                self.scanned = 0;
                if self.pending.len() > EVENT_MAX {
                    self.oversized(tracker, out);
                }
            }
            return;
        }
        self.pending.extend_from_slice(data);
        // the pending bytes: one event at a time
        let pending = std::mem::take(&mut self.pending);
        let mut at = 0;
        let mut from = self.scanned;
        loop {
            match event_bounds(&pending, from) {
                Ok((end, line_break)) => {
                    // the first line break is the event's when the search began at its start
                    let line_break = (from == at).then(|| line_break - at);
                    if !self.event(&pending[at..end], line_break, tracker, out) {
                        tracker.feed(&pending[end..]);
                        self.scanned = 0;
                        return;
                    }
                    at = end;
                    from = end;
                }
                Err(line) => {
                    self.scanned = line - at;
                    break;
                }
            }
        }
        self.pending = pending;
        self.pending.drain(..at);
        if self.pending.len() > EVENT_MAX {
            self.oversized(tracker, out);
        }
    }

    /// The stream ended: an unfinished event goes out as it is.
    pub fn finish(&mut self, tracker: &mut ResponseTracker, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        tracker.feed(&pending);
        tracker.finish();
        if !self.ended() {
            out.extend_from_slice(&pending);
        }
        self.scanned = 0;
    }

    /// Rewriting stops (the rest of the stream passes unchanged, the tracker reads it on its
    /// own): an incomplete event goes out as it is.
    pub fn stop(&mut self, tracker: &mut ResponseTracker, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        tracker.feed(&pending);
        if !self.ended() {
            out.extend_from_slice(&pending);
        }
        self.scanned = 0;
    }

    /// Bytes the client will not get (the request ended before they were sent): only read.
    pub fn track_unsent(&mut self, data: &[u8], tracker: &mut ResponseTracker) {
        if !self.pending.is_empty() {
            tracker.feed(&std::mem::take(&mut self.pending));
            self.scanned = 0;
        }
        tracker.feed(data);
    }

    /// One whole event: read, then kept, cut, dropped, or refused by the cap (false: the
    /// stream was ended, its ending is in `out`).
    fn event(
        &mut self,
        ev: &[u8],
        line_break: Option<usize>,
        tracker: &mut ResponseTracker,
        out: &mut Vec<u8>,
    ) -> bool {
        let facts = tracker.feed_event(ev, line_break);
        let rewrite = match self.stripper.as_mut() {
            Some(s) => s.rewrite(ev, facts),
            None => Rewrite::Keep,
        };
        if rewrite == Rewrite::Drop {
            return true;
        }
        if let Some(cap) = self.cap.as_mut() {
            let passes = cap.pass(facts);
            let head = cap.wants_head();
            tracker.want_head(head);
            if !passes {
                cap.end(out);
                return false;
            }
        }
        match rewrite {
            Rewrite::Cut(a, b) => {
                out.extend_from_slice(&ev[..a]);
                out.extend_from_slice(&ev[b..]);
            }
            _ => out.extend_from_slice(ev),
        }
        true
    }

    /// The pending event outgrew [`EVENT_MAX`]: the cap ends the stream, or the strip stops.
    fn oversized(&mut self, tracker: &mut ResponseTracker, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        tracker.feed(&pending);
        self.scanned = 0;
        match self.cap.as_mut() {
            Some(cap) => cap.end_oversized(out),
            None => {
                self.off = true;
                out.extend_from_slice(&pending);
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_responses;
