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
    /// OpenAI Responses (`POST .../responses`).
    Responses,
}

impl StreamApi {
    /// The API whose streams can be capped, by request path.
    pub fn of_path(path: &[u8]) -> Option<StreamApi> {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.ends_with(b"/chat/completions") {
            Some(StreamApi::OpenAiChat)
        } else if path.ends_with(b"/messages") {
            Some(StreamApi::Anthropic)
        } else if path.ends_with(b"/responses") {
            Some(StreamApi::Responses)
        } else {
            None
        }
    }

    /// Whether a string at `path` is completion text for the cap: content, reasoning,
    /// refusal and tool-call arguments (OpenAI Chat); text, thinking and tool input
    /// (Anthropic), wherever they are in the event; the top-level `delta` of a Responses
    /// event (whether that event's text counts is decided by its type, see
    /// [`ResponsesEvent`]).
    fn counts(self, path: &[Name]) -> bool {
        use Name::*;
        let Some(last) = path.last() else {
            return false;
        };
        match self {
            StreamApi::OpenAiChat => matches!(
                last,
                Content | ReasoningContent | Reasoning | Refusal | Arguments
            ),
            StreamApi::Anthropic => matches!(last, Text | Thinking | PartialJson),
            StreamApi::Responses => path == [Delta],
        }
    }
}

/// The kind of text a Responses `*.delta` / `*.done` event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// `response.output_text.*`
    OutputText,
    /// `response.refusal.*`
    Refusal,
    /// `response.reasoning_text.*`
    ReasoningText,
    /// `response.reasoning_summary_text.*`
    ReasoningSummary,
    /// `response.function_call_arguments.*`
    Arguments,
    /// Other text the model writes (`response.custom_tool_call_input.delta`,
    /// `response.code_interpreter_call_code.delta`, `response.audio.transcript.delta`, ...).
    Other,
}

/// OpenAI Responses event types that carry state for an ending (by their `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponsesEvent {
    #[default]
    Other,
    /// `response.created`, `response.in_progress`: the response's id, model, creation time.
    Started,
    OutputItemAdded,
    OutputItemDone,
    ContentPartAdded,
    ContentPartDone,
    SummaryPartAdded,
    SummaryPartDone,
    /// A `*.delta` event with completion text (not `response.audio.delta`: base64 audio).
    Delta(TextKind),
    /// The `*.done` event that repeats a text whole.
    TextDone(TextKind),
}

impl ResponsesEvent {
    fn of(name: &str) -> ResponsesEvent {
        use ResponsesEvent::*;
        let Some(rest) = name.strip_prefix("response.") else {
            return Other;
        };
        match rest {
            "created" | "in_progress" => return Started,
            "output_item.added" => return OutputItemAdded,
            "output_item.done" => return OutputItemDone,
            "content_part.added" => return ContentPartAdded,
            "content_part.done" => return ContentPartDone,
            "reasoning_summary_part.added" => return SummaryPartAdded,
            "reasoning_summary_part.done" => return SummaryPartDone,
            "audio.delta" => return Other,
            _ => {}
        }
        let (stem, delta) = if let Some(stem) = rest.strip_suffix(".delta") {
            (stem, true)
        } else if let Some(stem) = rest.strip_suffix(".done") {
            (stem, false)
        } else {
            return Other;
        };
        let kind = match stem {
            "output_text" => TextKind::OutputText,
            "refusal" => TextKind::Refusal,
            "reasoning_text" => TextKind::ReasoningText,
            "reasoning_summary_text" => TextKind::ReasoningSummary,
            "function_call_arguments" => TextKind::Arguments,
            _ if delta => TextKind::Other,
            _ => return Other,
        };
        if delta {
            Delta(kind)
        } else {
            TextDone(kind)
        }
    }
}

/// What a Responses event says that an ending repeats (its response's id, model and
/// creation time are [`EventFacts::id`], `model`, `created`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponsesFacts {
    pub event: ResponsesEvent,
    pub sequence: Option<u64>,
    pub output_index: Option<u64>,
    pub content_index: Option<u64>,
    pub summary_index: Option<u64>,
    /// `item.id`, `item.type`, `item.call_id`, `item.name` (output items).
    pub item_id: Option<String>,
    pub item_type: Option<String>,
    pub call_id: Option<String>,
    pub name: Option<String>,
    /// `part.type` (content and summary parts).
    pub part_type: Option<String>,
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
    /// OpenAI Responses events.
    pub responses: ResponsesFacts,
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
        if self.responses != ResponsesFacts::default() {
            self.responses = ResponsesFacts::default();
        }
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
        self.responses.clone_from(&other.responses);
    }

    /// Whether a string at `path` is completion text the cap counts.
    pub(crate) fn is_text(&self, want: &FactsWanted, path: &[Name]) -> bool {
        match path {
            [Name::Type] | [Name::Id | Name::Model] | [Name::Message, Name::Id | Name::Model] => {
                false
            }
            _ => want.api.is_some_and(|api| api.counts(path)),
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
            [Name::Created] | [Name::Response, Name::CreatedAt] => self.created = Some(v),
            [Name::Index] => self.index = Some(v),
            [Name::SequenceNumber] => self.responses.sequence = Some(v),
            [Name::OutputIndex] => self.responses.output_index = Some(v),
            [Name::ContentIndex] => self.responses.content_index = Some(v),
            [Name::SummaryIndex] => self.responses.summary_index = Some(v),
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
        use Name::*;
        if want.api == Some(StreamApi::Responses) {
            return matches!(
                path,
                [Type | Delta]
                    | [Response, Id | Model]
                    | [ItemKey, Id | Type | CallId | FunctionName]
                    | [Part, Type]
            );
        }
        match path {
            [Type] => want.api == Some(StreamApi::Anthropic),
            [Id | Model] | [Message, Id | Model] => want.head,
            _ => want.api.is_some_and(|api| api.counts(path)),
        }
    }

    pub(crate) fn string(&mut self, want: &FactsWanted, path: &[Name], piece: &str) {
        let head = |slot: &mut Option<String>| {
            let s = slot.get_or_insert_with(String::new);
            if s.len() + piece.len() <= NAME_MAX {
                s.push_str(piece);
            }
        };
        let r = &mut self.responses;
        match (want.api, path) {
            (Some(StreamApi::Responses), [Name::Type]) => r.event = ResponsesEvent::of(piece),
            (Some(StreamApi::Responses), [Name::Response, Name::Id]) => head(&mut self.id),
            (Some(StreamApi::Responses), [Name::Response, Name::Model]) => head(&mut self.model),
            (Some(StreamApi::Responses), [Name::ItemKey, key]) => match key {
                Name::Id => head(&mut r.item_id),
                Name::Type => head(&mut r.item_type),
                Name::CallId => head(&mut r.call_id),
                _ => head(&mut r.name),
            },
            (Some(StreamApi::Responses), [Name::Part, Name::Type]) => head(&mut r.part_type),
            (Some(StreamApi::Anthropic), [Name::Type]) => {
                self.event_type = EventType::of(piece);
            }
            (Some(StreamApi::Anthropic), [Name::Message, Name::Id])
            | (Some(StreamApi::OpenAiChat) | None, [Name::Id]) => head(&mut self.id),
            (Some(StreamApi::Anthropic), [Name::Message, Name::Model])
            | (Some(StreamApi::OpenAiChat) | None, [Name::Model]) => head(&mut self.model),
            (Some(api), _) if api.counts(path) => {
                self.saw_text = true;
                self.text.push_str(piece);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_event_types() {
        use ResponsesEvent::*;
        for (name, kind) in [
            ("response.created", Started),
            ("response.in_progress", Started),
            ("response.output_item.added", OutputItemAdded),
            ("response.output_item.done", OutputItemDone),
            ("response.content_part.added", ContentPartAdded),
            ("response.reasoning_summary_part.done", SummaryPartDone),
            ("response.output_text.delta", Delta(TextKind::OutputText)),
            ("response.output_text.done", TextDone(TextKind::OutputText)),
            ("response.refusal.delta", Delta(TextKind::Refusal)),
            (
                "response.reasoning_text.delta",
                Delta(TextKind::ReasoningText),
            ),
            (
                "response.reasoning_summary_text.done",
                TextDone(TextKind::ReasoningSummary),
            ),
            (
                "response.function_call_arguments.delta",
                Delta(TextKind::Arguments),
            ),
            (
                "response.custom_tool_call_input.delta",
                Delta(TextKind::Other),
            ),
            ("response.audio.transcript.delta", Delta(TextKind::Other)),
            // base64 audio is not text
            ("response.audio.delta", Other),
            ("response.custom_tool_call_input.done", Other),
            ("response.output_text.annotation.added", Other),
            ("response.completed", Other),
            ("error", Other),
            ("content_block_delta", Other),
        ] {
            assert_eq!(ResponsesEvent::of(name), kind, "{name}");
        }
    }
}
