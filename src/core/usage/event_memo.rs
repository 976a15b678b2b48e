//! A memo of an event's layout: the events of one stream are mostly the same bytes around
//! one changing string (OpenAI's `{"id":...,"choices":[{"index":0,"delta":{"content":"` +
//! text + `"},"logprobs":null,"finish_reason":null}]}`, Anthropic's `content_block_delta`).
//! When an event has exactly the bytes of the memoised one before its text string and after
//! it, a scan of it would report exactly what the memoised scan reported (a scan reads left to
//! right and its state at any byte depends only on the bytes before), except the text: so
//! only the text is read and the rest of the reading is taken from the memo. The memo is
//! made from an event with exactly one text string and no usage number (see
//! [`Layout`](super::scan_whole::Layout)), so what it stands for is only facts of the event.

use std::borrow::Cow;

use super::event::EventFacts;
use super::scan::{string_stop, Name, MAX_DEPTH};
use super::scan_whole::{unescape, Layout};
use crate::core::json_bytes::lossy;

/// Longest event data memoised.
const MEMO_MAX: usize = 4096;

#[derive(Debug)]
pub(super) struct EventMemo {
    valid: bool,
    /// The data but the text string's contents: up to them (the opening quote included),
    /// then from the closing quote on, in one buffer split at `split`.
    layout: Vec<u8>,
    split: usize,
    path: [Name; MAX_DEPTH],
    depth: usize,
    /// The facts of the memoised event (its text left out) and whether it was one whole
    /// document.
    facts: EventFacts,
    complete: bool,
}

impl Default for EventMemo {
    fn default() -> Self {
        EventMemo {
            valid: false,
            layout: Vec::new(),
            split: 0,
            path: [Name::Other; MAX_DEPTH],
            depth: 0,
            facts: EventFacts::default(),
            complete: false,
        }
    }
}

impl EventMemo {
    pub(super) fn clear(&mut self) {
        self.valid = false;
    }

    /// Memoises `json` (just scanned: `layout`, `facts`, `complete`) when it has one text
    /// string and no usage number.
    pub(super) fn remember(
        &mut self,
        json: &[u8],
        layout: &Layout,
        facts: &EventFacts,
        complete: bool,
    ) {
        if layout.texts != 1 || layout.kept_number || json.len() > MEMO_MAX {
            return;
        }
        self.layout.clear();
        // room for the usual layouts at once (not one reallocation per longer event)
        self.layout.reserve(MEMO_MAX / 4);
        self.layout.extend_from_slice(&json[..layout.start]);
        self.layout.extend_from_slice(&json[layout.end..]);
        self.split = layout.start;
        self.path = layout.path;
        self.depth = layout.depth.min(MAX_DEPTH);
        self.facts.copy_layout_from(facts);
        self.complete = complete;
        self.valid = true;
    }

    /// The text of `json` when it has the memoised layout.
    pub(super) fn text_of<'j>(&self, json: &'j [u8]) -> Option<Cow<'j, str>> {
        let (prefix, suffix) = self.layout.split_at(self.split);
        if !self.valid || json.len() < self.layout.len() || !json.starts_with(prefix) {
            return None;
        }
        let start = prefix.len();
        let mut at = start;
        let mut escaped = false;
        let end = loop {
            let stop = string_stop(json, at);
            match json.get(stop)? {
                b'"' => break stop,
                _ => {
                    escaped = true;
                    at = stop + 2;
                }
            }
        };
        if json[end..] != *suffix {
            return None;
        }
        let raw = &json[start..end];
        if escaped {
            unescape(raw).map(Cow::Owned)
        } else {
            Some(lossy(raw))
        }
    }

    pub(super) fn path(&self) -> &[Name] {
        &self.path[..self.depth]
    }

    pub(super) fn facts(&self) -> &EventFacts {
        &self.facts
    }

    pub(super) fn complete(&self) -> bool {
        self.complete
    }
}
