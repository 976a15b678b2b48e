//! What one event of a stream says beyond its usage, read in the tracker's single pass over
//! it (see [`ResponseTracker::feed_event`](super::ResponseTracker::feed_event)): the shape of
//! its top (is `usage` null, is `choices` empty), the completion text an output cap counts,
//! and the few fields an ending written by the gateway repeats (id, model, creation time,
//! choice indexes, Anthropic's event type and block index). The stream rewriting stages
//! decide from these facts instead of reading the event again.

use super::scan::{Kind, Name};

/// The streaming APIs whose streams the gateway rewrites (output cap), by request path.
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

    /// Whether a string under `key` is completion text for the cap: content, reasoning,
    /// refusal and tool-call arguments (OpenAI Chat); text, thinking and tool input
    /// (Anthropic), wherever they are in the event.
    fn counts(self, key: Name) -> bool {
        use Name::*;
        match self {
            StreamApi::OpenAiChat => matches!(
                key,
                Content | ReasoningContent | Reasoning | Refusal | Arguments
            ),
            StreamApi::Anthropic => matches!(key, Text | Thinking | PartialJson),
        }
    }
}

/// Anthropic's event types that carry state for an ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventType {
    #[default]
    Other,
    MessageStart,
    ContentBlockStart,
    ContentBlockStop,
    ContentBlockDelta,
}

impl EventType {
    fn of(name: &str) -> EventType {
        match name {
            "message_start" => EventType::MessageStart,
            "content_block_start" => EventType::ContentBlockStart,
            "content_block_stop" => EventType::ContentBlockStop,
            "content_block_delta" => EventType::ContentBlockDelta,
            _ => EventType::Other,
        }
    }
}

/// Longest id or model name kept for an ending.
const NAME_MAX: usize = 256;
/// Most choice indexes remembered per event.
const INDEXES_MAX: usize = 128;

/// See the module documentation. Reset before each event.
#[derive(Debug, Default)]
pub struct EventFacts {
    /// `data:` lines of the event.
    pub data_lines: u32,
    /// The data was one complete JSON document.
    pub complete: bool,
    /// The document is an object.
    pub object: bool,
    /// The kind of its top-level `usage`, if it has one.
    pub usage: Option<Kind>,
    /// The number of items of its top-level `choices`, if that is an array.
    pub choices: Option<u32>,
    /// Completion text the output cap counts (unescaped).
    pub text: String,
    /// Whether any such text was seen (it may be empty).
    pub saw_text: bool,
    /// `choices[].index` values (OpenAI).
    pub indexes: Vec<u64>,
    /// Top-level `id`/`model` (OpenAI) or `message.id`/`message.model` (Anthropic), when
    /// [`FactsWanted::head`] asked for them.
    pub id: Option<String>,
    pub model: Option<String>,
    /// Top-level `created` (OpenAI).
    pub created: Option<u64>,
    /// Top-level `type` (Anthropic).
    pub event_type: EventType,
    /// Top-level `index` (Anthropic's content block).
    pub index: Option<u64>,
    /// Where the event's first line break is, when the framing that cut the event out found
    /// it (so that no reader of the event looks for it again).
    pub line_break: Option<usize>,
}

/// Which facts a reader wants, besides the shape (always read).
#[derive(Debug, Clone, Copy, Default)]
pub struct FactsWanted {
    /// The API whose completion text is collected (none: no text).
    pub api: Option<StreamApi>,
    /// Id, model and creation time (the first event that has them is enough).
    pub head: bool,
}

impl EventFacts {
    pub(crate) fn reset(&mut self) {
        self.data_lines = 0;
        self.complete = false;
        self.object = false;
        self.usage = None;
        self.choices = None;
        self.text.clear();
        self.saw_text = false;
        self.indexes.clear();
        self.id = None;
        self.model = None;
        self.created = None;
        self.event_type = EventType::Other;
        self.index = None;
        self.line_break = None;
    }

    /// Takes `other`'s facts but its text (reusing this one's memory).
    pub(crate) fn copy_layout_from(&mut self, other: &EventFacts) {
        self.data_lines = other.data_lines;
        self.complete = other.complete;
        self.object = other.object;
        self.usage = other.usage;
        self.choices = other.choices;
        self.indexes.clone_from(&other.indexes);
        self.id.clone_from(&other.id);
        self.model.clone_from(&other.model);
        self.created = other.created;
        self.event_type = other.event_type;
        self.index = other.index;
    }

    /// Whether a string at `path` is completion text the cap counts.
    pub(crate) fn is_text(&self, want: &FactsWanted, path: &[Name]) -> bool {
        match path {
            [Name::Type] | [Name::Id | Name::Model] | [Name::Message, Name::Id | Name::Model] => {
                false
            }
            [.., last] => want.api.is_some_and(|api| api.counts(*last)),
            [] => false,
        }
    }

    /// The event begins a value at `path` (at most two names deep).
    pub(crate) fn value(&mut self, path: &[Name], kind: Kind) {
        match path {
            [] => self.object = kind == Kind::Object,
            [Name::Usage] => self.usage = Some(kind),
            [Name::Choices] => self.choices = (kind == Kind::Array).then_some(0),
            [Name::Choices, Name::Item] => {
                if let Some(n) = self.choices.as_mut() {
                    *n += 1;
                }
            }
            _ => {}
        }
    }

    pub(crate) fn number(&mut self, path: &[Name], v: u64) {
        match path {
            [Name::Created] => self.created = Some(v),
            [Name::Index] => self.index = Some(v),
            [Name::Choices, Name::Item, Name::Index]
                if !self.indexes.contains(&v) && self.indexes.len() < INDEXES_MAX =>
            {
                self.indexes.push(v);
            }
            _ => {}
        }
    }

    /// Whether the string at `path` is one of the wanted facts.
    pub(crate) fn wants(&self, want: &FactsWanted, path: &[Name]) -> bool {
        match path {
            [Name::Type] => want.api == Some(StreamApi::Anthropic),
            [Name::Id | Name::Model] | [Name::Message, Name::Id | Name::Model] => want.head,
            [.., last] => want.api.is_some_and(|api| api.counts(*last)),
            [] => false,
        }
    }

    pub(crate) fn string(&mut self, want: &FactsWanted, path: &[Name], piece: &str) {
        let head = |slot: &mut Option<String>| {
            let s = slot.get_or_insert_with(String::new);
            if s.len() + piece.len() <= NAME_MAX {
                s.push_str(piece);
            }
        };
        match (want.api, path) {
            (Some(StreamApi::Anthropic), [Name::Type]) => {
                self.event_type = EventType::of(piece);
            }
            (Some(StreamApi::Anthropic), [Name::Message, Name::Id])
            | (Some(StreamApi::OpenAiChat) | None, [Name::Id]) => head(&mut self.id),
            (Some(StreamApi::Anthropic), [Name::Message, Name::Model])
            | (Some(StreamApi::OpenAiChat) | None, [Name::Model]) => head(&mut self.model),
            (Some(api), [.., last]) if api.counts(*last) => {
                self.saw_text = true;
                self.text.push_str(piece);
            }
            _ => {}
        }
    }
}
